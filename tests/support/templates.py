"""Small AIB templates for the tests, written to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

SOURCE = {
    "type": "PlatformImage",
    "publisher": "Canonical",
    "offer": "ubuntu-24_04-lts",
    "sku": "server",
    "version": "latest",
}
IDENTITY = {
    "type": "UserAssigned",
    "userAssignedIdentities": {
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/aib": {}
    },
}
DISTRIBUTE = [
    {
        "type": "ManagedImage",
        "imageId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        "Microsoft.Compute/images/test",
        "location": "westeurope",
        "runOutputName": "test",
    }
]


def image_template(customize: list[dict], validations: list[dict] | None = None, **properties: object) -> dict:
    props: dict[str, object] = {"source": SOURCE, "customize": customize, "distribute": DISTRIBUTE, **properties}
    if validations:
        props["validate"] = {"inVMValidations": validations}
    return {
        "type": "Microsoft.VirtualMachineImages/imageTemplates",
        "apiVersion": "2024-02-01",
        "location": "westeurope",
        "identity": IDENTITY,
        "properties": props,
    }


def write_template(
    folder: Path,
    customize: list[dict],
    validations: list[dict] | None = None,
    name: str = "template.json",
    **properties: object,
) -> Path:
    path = folder / name
    path.write_text(json.dumps(image_template(customize, validations, **properties), indent=2))
    return path


def shell(name: str, *lines: str) -> dict:
    return {"type": "Shell", "name": name, "inline": list(lines)}
