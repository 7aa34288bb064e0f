"""Azure resource IDs, which AIB uses where Packer takes names: parsing and building them.

``/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/galleries/G/images/I/versions/V`` parses to
``ResourceId(subscription="S", resource_group="RG", names={"galleries": "G", "images": "I", "versions": "V"})``.
Segment names compare case-insensitively (ARM does); values keep their case.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResourceId:
    subscription: str | None = None
    resource_group: str | None = None
    provider: str | None = None
    # resource type segment (lower case) -> name, in order
    names: dict[str, str] = field(default_factory=dict)

    def get(self, segment: str) -> str | None:
        return self.names.get(segment.lower())


def parse(text: str) -> ResourceId | None:
    """The parts of an ARM resource ID, or None when ``text`` is not one."""
    parts = text.strip().strip("/").split("/")
    if len(parts) < 2 or parts[0].lower() != "subscriptions":
        return None
    sub = parts[1]
    rg = provider = None
    names: dict[str, str] = {}
    i = 2
    if i + 1 < len(parts) and parts[i].lower() == "resourcegroups":
        rg = parts[i + 1]
        i += 2
    if i + 1 < len(parts) and parts[i].lower() == "providers":
        provider = parts[i + 1]
        i += 2
        while i + 1 < len(parts):
            names[parts[i].lower()] = parts[i + 1]
            i += 2
        if i != len(parts):
            return None
    elif i != len(parts):
        return None
    return ResourceId(sub, rg, provider, names)


def build(subscription: str, resource_group: str | None = None, provider: str | None = None, *pairs: str) -> str:
    """``build(s, rg, "Microsoft.Compute", "images", "name")`` -> the resource ID."""
    out = f"/subscriptions/{subscription}"
    if resource_group is not None:
        out += f"/resourceGroups/{resource_group}"
    if provider:
        out += f"/providers/{provider}"
        for i in range(0, len(pairs) - 1, 2):
            out += f"/{pairs[i]}/{pairs[i + 1]}"
    return out


def managed_image(subscription: str, resource_group: str, name: str) -> str:
    return build(subscription, resource_group, "Microsoft.Compute", "images", name)


def gallery_image(subscription: str, resource_group: str, gallery: str, image: str, version: str | None) -> str:
    pairs = ["galleries", gallery, "images", image]
    if version is not None:
        pairs += ["versions", version]
    return build(subscription, resource_group, "Microsoft.Compute", *pairs)


def subnet(subscription: str, resource_group: str, vnet: str, name: str) -> str:
    return build(subscription, resource_group, "Microsoft.Network", "virtualNetworks", vnet, "subnets", name)
