"""AIB → Packer HCL2: golden outputs, and every generated file checked by the real Packer 1.6.6."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aibx.diagnostics import format_path
from aibx.loader import load
from aibx.translators import aib_to_packer
from aibx.translators.hcl_writer import Block, dumps
from aibx.translators.report import Report, Status
from aibx.translators.to_packer import ToPacker
from aibx.validation import validate
from tests.support.packer import run_packer
from tests.translate_cases import (
    AIB_FIXTURES,
    SECURE_OBJECT,
    SECURE_VALUES,
    TRANSLATE,
    aib_to_packer_outputs,
    expected_dir,
    in_fixtures,
    secure_deployment,
)


def translate_blocks(fixture: str) -> list[Block]:
    with in_fixtures():
        tpl = validate(load(f"aib/{fixture}").documents[0]).template
        return ToPacker(tpl, Report(fixture, "packer"), Path.cwd() / "aib").blocks()


@pytest.mark.parametrize("fixture", AIB_FIXTURES)
def test_golden(fixture: str) -> None:
    for name, text in aib_to_packer_outputs(fixture).items():
        expected = (expected_dir("aib-to-packer") / name).read_text(encoding="utf-8")
        assert text == expected, f"{name} differs: run scripts/update_translate_golden.py and review the diff"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every AIB fixture translated, as the files a user gets."""
    folder = tmp_path_factory.mktemp("hcl")
    for fixture in AIB_FIXTURES:
        name = fixture.removesuffix(".json")
        (folder / name).mkdir()
        text = aib_to_packer_outputs(fixture)[f"{name}.pkr.hcl"]
        (folder / name / f"{name}.pkr.hcl").write_text(text)
    return folder


def test_packer_fmt_accepts_every_generated_file(generated: Path, tmp_path: Path) -> None:
    folders = sorted(p for p in generated.iterdir() if p.is_dir())
    assert len(folders) == len(AIB_FIXTURES)
    for folder in folders:  # Packer 1.6.6's fmt has no -recursive
        result = run_packer(["fmt", "-check", "."], folder, tmp_path)
        assert result.returncode == 0, f"{folder.name}: {result.stdout}{result.stderr}"


def without_166_gaps(blocks: list[Block], *, target_regions: bool = False) -> list[Block]:
    """The document minus what Packer 1.6.6 predates: the packer {} block and windows-update provisioners
    (and, for a full validate, target_region blocks, two gallery destination settings, and gallery-only
    outputs, which 1.6.6's builder refuses)."""
    out = [b for b in blocks if b.type != "packer"]
    for b in out:
        if b.type == "build":
            b.blocks = [p for p in b.blocks if p.labels != ["windows-update"]]
        if b.type == "source" and target_regions:
            for dest in b.blocks:
                if dest.type == "shared_image_gallery_destination":
                    regions = [r.attributes["name"] for r in dest.blocks if r.type == "target_region"]
                    dest.blocks = [r for r in dest.blocks if r.type != "target_region"]
                    if regions:
                        dest.attributes["replication_regions"] = regions
                    dest.attributes.pop("storage_account_type", None)
                    dest.attributes.pop("use_shallow_replication", None)
                    if "managed_image_name" not in b.attributes:  # 1.6.6 cannot write a gallery version alone
                        b.attributes["managed_image_name"] = "image"
                        b.attributes["managed_image_resource_group_name"] = "rg"
    return out


@pytest.mark.parametrize("fixture", AIB_FIXTURES)
def test_packer_validate_syntax_only(fixture: str, tmp_path: Path) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "t.pkr.hcl").write_text(dumps(without_166_gaps(translate_blocks(fixture))))
    result = run_packer(["validate", "-syntax-only", "t.pkr.hcl"], folder, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Syntax-only check passed" in result.stdout


@pytest.mark.parametrize("fixture", AIB_FIXTURES)
def test_packer_validate_accepts_every_field_166_knows(fixture: str, tmp_path: Path) -> None:
    """A full ``packer validate`` (the azure-arm builder's own checks, no Azure calls) on the 1.6.6 subset:
    every other field name, block and value type is accepted by the real builder and provisioners."""
    blocks = without_166_gaps(translate_blocks(fixture), target_regions=True)
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "t.pkr.hcl").write_text(dumps(blocks))
    args = []
    for b in blocks:
        if b.type == "variable" and "default" not in b.attributes:
            args += ["-var", f"{b.labels[0]}=1.0.0"]
    result = run_packer(["validate", *args, "t.pkr.hcl"], folder, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_field_of_the_templates_is_reported() -> None:
    """Nothing is dropped silently: each customizer, validator, distribute target and top-level property of
    every fixture has an entry."""
    for fixture in AIB_FIXTURES:
        report = json.loads(aib_to_packer_outputs(fixture)[fixture.replace(".json", ".report.json")])
        subjects = " ".join(e["subject"] for e in report["entries"])
        with in_fixtures():
            doc = load(f"aib/{fixture}").documents[0]
        tpl = validate(doc).template
        for step in [*tpl.customize, *(tpl.validate.in_vm_validations if tpl.validate else [])]:
            assert format_path(step.path) in subjects, (fixture, step.path)
        for dist in tpl.distribute:
            assert format_path(dist.path) in subjects, (fixture, dist.path)
        props = doc.resource.get("properties", {})
        for key in props:
            if key not in ("customize", "validate", "distribute", "source", "vmProfile"):
                assert f"properties.{key}" in subjects, (fixture, key)


def translate_inline(resource: dict, tmp_path: Path) -> tuple[str, Report]:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(resource))
    return aib_to_packer(validate(load(str(path)).documents[0]).template, tmp_path)


def base_template(**props) -> dict:
    return {
        "type": "Microsoft.VirtualMachineImages/imageTemplates",
        "apiVersion": "2024-02-01",
        "location": "westeurope",
        "properties": {
            "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "o", "sku": "s", "version": "1"},
            "customize": [{"type": "Shell", "inline": ["true"]}],
            "distribute": [
                {
                    "type": "ManagedImage",
                    "imageId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i",
                    "location": "westeurope",
                    "runOutputName": "r",
                }
            ],
            **props,
        },
    }


def test_what_packer_cannot_express_is_dropped_and_lossy(tmp_path: Path) -> None:
    tpl = base_template(
        optimize={"vmBoot": {"state": "Enabled"}},
        validate={"sourceValidationOnly": True},
    )
    tpl["properties"]["distribute"] += [
        {
            "type": "ManagedImage",
            "imageId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/second",
            "location": "northeurope",
            "runOutputName": "r2",
        },
        {"type": "VHD", "runOutputName": "v"},
    ]
    _text, report = translate_inline(tpl, tmp_path)
    dropped = {e.subject: e.detail for e in report.entries if e.status is Status.DROPPED}
    assert "properties.optimize" in dropped
    assert "properties.validate.sourceValidationOnly" in dropped
    # class 9 of issue 10: outputs one source cannot write get sources of their own, reported as approximated
    own = [e.subject for e in report.entries if "a source of its own" in e.detail]
    assert own == ["properties.distribute[1] (ManagedImage) (source)", "properties.distribute[2] (VHD) (source)"]
    assert all(e.status is Status.APPROXIMATED for e in report.entries if "a source of its own" in e.detail)
    assert "properties.distribute[1].location" in dropped  # a managed image in another region
    assert report.lossy


def test_a_local_file_with_a_wrong_checksum_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "motd.txt").write_text("hello\n")
    tpl = base_template()
    tpl["properties"]["customize"] = [
        {"type": "File", "sourceUri": "file:motd.txt", "destination": "/tmp/motd", "sha256Checksum": "0" * 64}
    ]
    _text, report = translate_inline(tpl, tmp_path)
    assert [d.code for d in report.diagnostics] == ["AIB075"]
    assert "the file's sha256 is" in report.diagnostics[0].message
    assert report.diagnostics[0].line > 0


def test_secrets_stay_out_of_the_report(tmp_path: Path) -> None:
    """A SAS token in a URI reaches the Packer file (the build needs it) but never the report."""
    tpl = base_template()
    tpl["properties"]["customize"] = [
        {
            "type": "Shell",
            "scriptUri": "https://acct.blob.core.windows.net/c/s.sh?sv=2022&sig=TOPSECRET",
            "sha256Checksum": "a" * 64,
        }
    ]
    text, report = translate_inline(tpl, tmp_path)
    assert "TOPSECRET" in text
    assert "TOPSECRET" not in json.dumps(report.as_dict())


def test_quickstart_local_file_becomes_a_file_provisioner(tmp_path: Path) -> None:
    path = TRANSLATE.parent / "quickstart" / "local-file" / "hello-file.json"
    text, report = aib_to_packer(validate(load(str(path)).documents[0]).template, path.parent)
    assert 'source      = "${path.root}/motd.txt"' in text
    assert not report.diagnostics


def test_secure_parameters_become_sensitive_variables(tmp_path: Path) -> None:
    """No secret reaches the HCL: each becomes a sensitive variable without a default, referenced where the
    value was (alone, inside a line, inside a URI), listed in the report (AIB077); the file passes a full
    ``packer validate`` when the variables are given, and fails without them."""
    from aibx.loader import LoadOptions

    path = secure_deployment(tmp_path)
    params = {**SECURE_VALUES, "creds": json.dumps(SECURE_OBJECT)}
    doc = load(str(path), LoadOptions(parameters=params)).documents[0]
    text, report = aib_to_packer(validate(doc).template, tmp_path)
    assert not report.diagnostics
    for secret in [*SECURE_VALUES.values(), *SECURE_OBJECT.values(), "s3cr3t"]:
        assert secret not in text and secret not in json.dumps(report.as_dict())
    for name in ("adminPassword", "sasToken", "creds_token"):
        block = text[text.index(f'variable "{name}" {{') :].split("}", 1)[0]
        assert "sensitive   = true" in block and "default" not in block, block
    assert '"echo ${var.adminPassword} | passwd --stdin builder",' in text
    assert "\n      var.adminPassword,\n" in text
    assert '"export TOKEN=\\"${var.creds_token}\\"",' in text
    assert "'https://acct.blob.core.windows.net/c/s.sh?${var.sasToken}'" in text
    secret_entries = {e.subject: e for e in report.entries if e.code == "AIB077"}
    assert set(secret_entries) == {
        "parameters.adminPassword (secure)",
        "parameters.sasToken (secure)",
        "parameters.creds.token (secure)",
    }
    assert "-var creds_token=VALUE" in secret_entries["parameters.creds.token (secure)"].detail
    assert "PKR_VAR_creds_token" in secret_entries["parameters.creds.token (secure)"].detail
    assert secret_entries["parameters.sasToken (secure)"].location.line == 8
    assert not report.lossy

    # real Packer 1.6.6, the packer {} block removed (it predates required_plugins)
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "t.pkr.hcl").write_text(text[text.index("variable ") :])
    given = [f"{k}={v}" for k, v in SECURE_VALUES.items()] + [f"creds_token={SECURE_OBJECT['token']}"]
    result = run_packer(["validate", *(a for g in given for a in ("-var", g)), "t.pkr.hcl"], folder, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr
    missing = run_packer(["validate", "t.pkr.hcl"], folder, tmp_path)
    assert missing.returncode != 0 and 'Unset variable "adminPassword"' in missing.stdout + missing.stderr


def test_a_secret_aibx_cannot_replace_is_an_error_and_nothing_is_written(tmp_path: Path) -> None:
    """The last check: a secret quoted for a shell (its quote changed) cannot become a reference; the
    translation fails (AIB071, exit 2) and writes nothing, and the message does not show it."""
    from tests.support.cli import invoke

    path = secure_deployment(tmp_path)
    out = tmp_path / "out.pkr.hcl"
    result = invoke(
        "translate", path, "--to", "packer", "-o", out,
        "-p", f"adminPassword={SECURE_VALUES['adminPassword']}", "-p", "sasToken=sv=1&sig=it's-s3cr3t",
        "-p", "creds=" + json.dumps(SECURE_OBJECT),
    )  # fmt: skip
    assert result.code == 2, result.text
    assert "error[AIB071] the secret sasToken would be written" in result.err
    assert not out.exists()
    assert "s3cr3t" not in result.text
