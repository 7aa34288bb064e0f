"""Writing Bicep (aibx translate --to bicep): from AIB JSON / ARM and from Packer; the text reads back with
aibx's Bicep reader to the same model (the round trip), and secrets are never written."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibx.document import Unresolved
from aibx.loader import LoadOptions, load
from aibx.translators import aib_to_bicep
from aibx.translators.aib import template_to_resource
from aibx.validation import validate
from tests.conftest import FIXTURES
from tests.support.cli import invoke

AIB = FIXTURES / "translate" / "aib"
ROUND_TRIP = [
    *sorted(AIB.glob("*.json")),
    *sorted((FIXTURES / "validate" / "valid").glob("stable-*.json")),
    FIXTURES / "validate" / "valid" / "windows-2024-02-01.json",
    FIXTURES / "bicep" / "constructs.bicep",
]
PACKER = FIXTURES / "translate" / "packer" / "linux-single"


def comparable(value: object) -> object:
    """The model's resource with what cannot be known offline as one marker (its text differs by format)."""
    if isinstance(value, Unresolved):
        return "<unknown>"
    if isinstance(value, dict):
        return {
            ("<key>" if isinstance(k, Unresolved) or "<" in k or "$" in k else k): comparable(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def code(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("@description(")]


def read_model(path: Path, **kw: object) -> list:
    result = load(str(path), LoadOptions(**kw))  # type: ignore[arg-type]
    assert result.documents, [d.format() for d in result.diagnostics]
    return [validate(doc).template for doc in result.documents]


@pytest.mark.parametrize("path", ROUND_TRIP, ids=lambda p: p.name)
def test_bicep_output_reads_back_to_the_same_model(path: Path, tmp_path: Path) -> None:
    for tpl in read_model(path):
        text, report = aib_to_bicep(tpl, source=str(path))
        assert not report.diagnostics
        out = tmp_path / "out.bicep"
        out.write_text(text)
        (again,) = read_model(out)
        assert again.api_version == tpl.api_version
        assert comparable(template_to_resource(again)) == comparable(template_to_resource(tpl))
        assert aib_to_bicep(tpl, source=str(path))[0] == text  # deterministic
        text2, _ = aib_to_bicep(again, source=str(out))
        assert code(text2) == code(text)  # stable through a second trip (descriptions tell the latest reason)


def test_the_output_is_idiomatic_bicep(tmp_path: Path) -> None:
    (tpl,) = read_model(AIB / "arm-deployment.json")
    text, _ = aib_to_bicep(tpl)
    assert "resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {" in text
    assert "'${identity.id}': {}" in text
    assert "resource galleryImage 'Microsoft.Compute/galleries/images@2022-03-03' existing = {" in text
    assert "galleryImageId: '${galleryImage.id}/versions/2.0.0'" in text
    assert "param vmSize string" in text and "vmSize: vmSize" in text  # [parameters('vmSize')] stays a param
    assert "\t" not in text and all((len(line) - len(line.lstrip())) % 2 == 0 for line in text.splitlines())
    assert (
        "resource imageTemplate 'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01' = {" in text
    )  # the source's apiVersion


def test_a_secure_parameter_is_a_secure_param_never_its_value(tmp_path: Path) -> None:
    (tpl,) = read_model(FIXTURES / "bicep" / "constructs.bicep", parameters={"adminPassword": "pa55-w0rd-secret"})
    text, report = aib_to_bicep(tpl)
    assert "pa55-w0rd-secret" not in text
    assert "@secure()\nparam adminPassword string\n" in text
    assert "'echo ${adminPassword} | passwd --stdin azureuser'" in text
    assert any(e.code == "AIB077" for e in report.entries)


def test_packer_to_bicep_declares_the_variables_as_params(tmp_path: Path) -> None:
    out = tmp_path / "web.bicep"
    result = invoke("translate", str(PACKER), "--to", "bicep", "-o", str(out), "--allow-lossy")
    assert result.code == 0, result.text
    text = out.read_text()
    assert "tok-3f9a1c77e2" not in text and "tok-3f9a1c77e2" not in result.text
    assert "@secure()\nparam api_token string\n" in text  # sensitive: no default written
    assert "param location string = 'westeurope'" in text and "location: location" in text
    assert "param packages" not in text  # its value is inside a script line only: the template holds it there
    assert "param image_name string\n" in text  # no default in Packer: a param without one
    assert "'${identityId}': {}" in text
    (again,) = read_model(out, parameters={"api_token": "x" * 8, "image_name": "img", "identityId": "/id"})
    assert again.source is not None
    assert [s.name for s in again.customize][:2] == ["packages", "plain"]


def test_translate_reads_bicep_and_writes_packer() -> None:
    result = invoke("translate", str(FIXTURES / "bicep" / "with-module.bicep"), "--to", "packer", "--allow-lossy")
    assert result.code == 0, result.text
    assert 'source "azure-arm"' in result.out and "echo two" in result.out
