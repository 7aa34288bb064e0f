"""Issue 10, classes 7-13: translation verdicts that are right on the templates people have.

Each class has its own small fixture in fixtures/translate/fidelity/ (c07-... to c12-..., hcp/). The Packer files
aibx writes are checked by the real Packer 1.6.6 (``packer validate``, after removing what 1.6.6 predates, with a
value for every variable), and the round trip AIB → Packer → AIB by ``aibx validate``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aibx.cli import main
from aibx.loader import read_json
from tests.support.packer import packer_validate
from tests.translate_cases import TRANSLATE

FIDELITY = TRANSLATE / "fidelity"
# azure-arm settings newer than the builder inside Packer 1.6.6 (/work/shared/reference/packer-1.6.6-debian.md):
# aibx writes them only where the template needs them (per-region replica counts or storage types, shallow
# replication)
NEWER_THAN_166 = {"target_region", "storage_account_type", "use_shallow_replication"}
AIB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# every AIB template fixture that Packer can build
BUILDABLE = sorted(
    [
        *(TRANSLATE / "aib").glob("*.json"),
        *(p for p in FIDELITY.glob("c0*.json")),  # c10-* cannot be built; c11-*, c12-* are Packer configurations
    ]
)


def translate(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["translate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def report_of(path: Path) -> dict:
    [report] = json.loads(path.read_text())["reports"]
    return report


def customizers(path: Path) -> list[tuple[str, str | None]]:
    doc, _smap, _diags = read_json(str(path))
    assert isinstance(doc, dict)
    resources = doc.get("resources", [doc])
    [resource] = [r for r in resources if str(r.get("type", "")).endswith("imageTemplates")]
    return [(c["type"], c.get("name")) for c in resource["properties"].get("customize", [])]


# ----------------------------------------------------------------------------------------------- class 7
def test_template_tags_are_not_applicable_and_not_lossy(capsys, tmp_path: Path) -> None:
    code, _out, err = translate(
        capsys, str(FIDELITY / "c07-template-tags.json"), "--to", "packer", "-o", str(tmp_path / "t.pkr.hcl"),
        "--report-json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert code == 0, err
    report = report_of(tmp_path / "r.json")
    assert report["lossy"] is False
    assert report["counts"]["dropped"] == 0 and report["counts"]["not-applicable"] == 1
    [entry] = [e for e in report["entries"] if e["status"] == "not-applicable"]
    assert entry["subject"] == "tags" and "code" not in entry and entry["line"] == 6
    assert "not-applicable tags" in err and "1 not applicable: complete" in err


# ----------------------------------------------------------------------------------------------- class 8
def test_unknown_values_become_packer_variables_never_dropped_steps(capsys, tmp_path: Path) -> None:
    out = tmp_path / "t.pkr.hcl"
    code, _out, err = translate(
        capsys, str(FIDELITY / "c08-open-values.json"), "--to", "packer", "-o", str(out),
        "--report-json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert code == 0, err
    text = out.read_text()
    report = report_of(tmp_path / "r.json")
    assert report["counts"]["dropped"] == 0
    # parameters without a value inside resourceId() and format(), and the wholly-placeholder scriptUri
    for name in ("galleryName", "definition", "imageRg", "scriptFileUrl", "subscriptionId", "location"):
        assert f'variable "{name}" {{' in text, name
    assert re.search(r"gallery_name +=( var.galleryName)", text) and re.search(r"image_name +=( var.definition)", text)
    assert "${var.scriptFileUrl}" in text and "https://${var.galleryName}.blob.core.windows.net/cfg/app.conf" in text
    assert [e["subject"].split('"')[1] for e in report["entries"] if "customize[" in e["subject"]] == [
        "fetch-and-run",
        "config",
    ]


def test_no_branch_is_chosen_and_no_text_cut_on_a_parameter_without_a_value(capsys, tmp_path: Path) -> None:
    """if(equals(parameters('x'), ...)) and substring(parameters('x'), ...) are open as a whole: a variable of
    their own, never the else branch or a cut placeholder."""
    out = tmp_path / "t.pkr.hcl"
    code, _out, err = translate(capsys, str(FIDELITY / "c08-open-conditions.json"), "--to", "packer", "-o", str(out))
    assert code == 0, err
    text = out.read_text()
    assert re.search(r"image_offer += var\.image_offer", text) and '= "ubuntu-24_04-lts"' not in text
    assert "<ima>" not in text and "echo <ima" not in text and "var.x_inline" in text
    assert re.search(r"managed_image_name += var\.imageName", text)


# ----------------------------------------------------------------------------------------------- class 9
def test_outputs_one_source_cannot_write_get_sources_of_their_own(capsys, tmp_path: Path) -> None:
    out = tmp_path / "t.pkr.hcl"
    code, _out, err = translate(
        capsys, str(FIDELITY / "c09-several-outputs.json"), "--to", "packer", "-o", str(out),
        "--report-json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert code == 0, err
    text = out.read_text()
    names = re.findall(r'^source "azure-arm" "([^"]+)"', text, re.MULTILINE)
    assert names == ["three-outputs", "three-outputs_managedimage", "three-outputs_managedimage_2"]
    for name in names:
        assert f'"source.azure-arm.{name}",' in text
    assert (
        'managed_image_name                = "first"' in text and 'managed_image_name                = "second"' in text
    )
    own = [e for e in report_of(tmp_path / "r.json")["entries"] if "a source of its own" in e["detail"]]
    assert [e["status"] for e in own] == ["approximated", "approximated"]


# ----------------------------------------------------------------------------------------------- class 10
@pytest.mark.parametrize(
    ("fixture", "why"),
    [
        ("c10-no-output.json", "Packer needs an output"),
        ("c10-iso-source.json", "Packer needs an image to start from"),
        ("c10-vhd-from-gallery.json", "Packer needs an output"),  # no VHD from a gallery or managed image source
    ],
)
def test_no_packer_file_without_an_image_or_an_output(capsys, tmp_path: Path, fixture: str, why: str) -> None:
    out = tmp_path / "t.pkr.hcl"
    code, _out, err = translate(capsys, str(FIDELITY / fixture), "--to", "packer", "-o", str(out), "--allow-lossy")
    assert code == 2
    assert "error[AIB071]" in err and why in err and "nothing was written" in err
    assert "translated anyway" not in err
    assert not out.exists()


@pytest.mark.parametrize("fixture", BUILDABLE, ids=lambda p: p.name)
def test_every_packer_file_written_is_accepted_by_packer(capsys, tmp_path: Path, fixture: Path) -> None:
    """Class 10 from the other side: what aibx writes, Packer 1.6.6 validates (variables given)."""
    out = tmp_path / "t.pkr.hcl"
    code, _out, err = translate(capsys, str(fixture), "--to", "packer", "-o", str(out), "--allow-lossy")
    assert code == 0, err
    check = packer_validate(out.read_text(), tmp_path / "166", tmp_path / "packer")
    said = check.stdout + check.stderr
    if check.returncode != 0:  # only for settings of the azure plugin >= 1.4, which Packer 1.6.6 predates
        errors = re.findall(r"^Error: (.*)$", said, re.MULTILINE)
        unknown = set(re.findall(r'(?:argument named|Blocks of type) "([^"]+)" (?:is|are) not expected here', said))
        assert errors and unknown and unknown <= NEWER_THAN_166, said
        assert set(errors) <= {"Unsupported argument", "Unsupported block type"}, said


# ----------------------------------------------------------------------------------------------- class 11
@pytest.mark.parametrize(
    ("fixture", "code", "steps"),
    [
        ("c11-sources-plural.pkr.hcl", 1, 1),  # the error-cleanup-provisioner: AIB has none (dropped)
        ("c11-legacy.json", 1, 1),
        ("c11-list-variable.pkr.hcl", 1, 0),  # a for over a list without a value: that step is dropped
        ("hcp", 0, 1),
    ],
)
def test_what_packer_accepts_is_translated_or_reported_never_refused(
    capsys, tmp_path: Path, fixture: str, code: int, steps: int
) -> None:
    out = tmp_path / "out"
    got, _out, err = translate(capsys, str(FIDELITY / fixture), "--to", "aib", "-o", f"{out}/")
    assert got == code, err
    assert "error[" not in err and "internal error" not in err
    [template] = list(out.glob("*.json"))
    assert len(customizers(template)) == steps


def test_packer_semantics_of_the_accepted_forms(capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # an undeclared {{user `X`}} is a required variable: --var sets it; {{pwd}}, pipelines, isotime
    code, _o, err = translate(
        capsys, str(FIDELITY / "c11-legacy.json"), "--to", "aib", "-o", f"{out}/", "--var", "image_name=golden",
        "--allow-lossy",
    )  # fmt: skip
    assert code == 0, err
    text = (out / "azure-arm.azure-arm.json").read_text()
    assert "/images/golden" in text and '"echo built from ' in text and "echo IMAGES 2" in text
    # without it, an open value
    translate(capsys, str(FIDELITY / "c11-legacy.json"), "--to", "aib", "-o", f"{tmp_path}/o2/", "--allow-lossy")
    assert "/images/<image_name>" in (tmp_path / "o2" / "azure-arm.azure-arm.json").read_text()
    # sources = ["sources.azure-arm.x"] is source.azure-arm.x; the cleanup provisioner is reported
    code, _o, err = translate(
        capsys, str(FIDELITY / "c11-sources-plural.pkr.hcl"), "--to", "aib", "-o", f"{tmp_path}/o3/"
    )
    assert "dropped      error-cleanup-provisioner" in err
    assert customizers(tmp_path / "o3" / "azure-arm.plural.json") == [("Shell", None)]
    # parts of object and list variables without a value are placeholders; HCP Packer artifacts too
    translate(
        capsys, str(FIDELITY / "c11-list-variable.pkr.hcl"), "--to", "aib", "-o", f"{tmp_path}/o4/", "--allow-lossy"
    )
    lists = (tmp_path / "o4" / "azure-arm.lists.json").read_text()
    assert "/resourceGroups/<gallery.resourceGroup>/" in lists and '"<regions>"' in lists
    translate(capsys, str(FIDELITY / "hcp"), "--to", "aib", "-o", f"{tmp_path}/o5/")
    hcp = (tmp_path / "o5" / "azure-arm.from-hcp.json").read_text()
    assert "<hcp-packer-artifact.golden.labels.managed_image_name>" in hcp


# ----------------------------------------------------------------------------------------------- class 12
def test_generated_names_fit_aib_and_the_result_validates(capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _o, err = translate(capsys, str(FIDELITY / "c12-long-names.pkr.hcl"), "--to", "aib", "-o", f"{out}/")
    assert code == 0, err
    [template] = list(out.glob("*.json"))
    doc = json.loads(template.read_text())
    outputs = [d["runOutputName"] for d in doc["properties"]["distribute"]]
    assert AIB_NAME.fullmatch(doc["name"]) and all(AIB_NAME.fullmatch(n) for n in outputs)
    assert len(set(outputs)) == len(outputs)
    assert "AIB names have at most 64" in err and "run output names have at most 64" in err
    # deterministic: the same names again
    translate(capsys, str(FIDELITY / "c12-long-names.pkr.hcl"), "--to", "aib", "-o", f"{tmp_path}/again/")
    assert json.loads(next((tmp_path / "again").glob("*.json")).read_text())["name"] == doc["name"]
    assert main(["validate", str(template)]) == 0, capsys.readouterr().err


def test_repeated_names_and_a_vhd_source_still_give_a_template_aib_accepts(capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _o, err = translate(
        capsys, str(FIDELITY / "c12-repeated-names.json"), "--to", "aib", "-o", f"{out}/", "--allow-lossy"
    )
    assert code == 0, err
    [template] = list(out.glob("*.json"))
    assert customizers(template) == [("Shell", "setup"), ("Shell", "setup (2)"), ("Shell", "SETUP (3)")]
    doc = json.loads(template.read_text())
    assert doc["properties"]["source"] == {"type": "ManagedImage", "imageId": "<source_image_id>"}
    assert "az image create --source URL" in err and "AIB needs unique names" in err
    assert main(["validate", str(template)]) == 0, capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- class 13
@pytest.mark.parametrize("fixture", BUILDABLE, ids=lambda p: p.name)
def test_round_trip_keeps_every_customizer_and_validates(capsys, tmp_path: Path, fixture: Path) -> None:
    hcl = tmp_path / "t.pkr.hcl"
    assert translate(capsys, str(fixture), "--to", "packer", "-o", str(hcl), "--allow-lossy")[0] == 0
    code, _o, err = translate(capsys, str(hcl), "--to", "aib", "-o", f"{tmp_path}/back/", "--allow-lossy")
    assert code == 0, err
    back = sorted(p for p in (tmp_path / "back").glob("*.json"))
    assert back
    for result in back:  # one per output source (class 9): each keeps every customizer, in order
        assert customizers(result) == customizers(fixture), result.name
        assert main(["validate", str(result)]) == 0, capsys.readouterr().err
