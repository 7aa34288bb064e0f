"""docs/compatibility.md stays true: every feature of the model and the swagger tables has a row, and the claims
are checked where that is cheap: the translate columns against what the translators do with the fixtures, the
run columns against what the provisioners compile for each OS and the transports `aibx run` takes."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from aibx import model
from aibx.engine.transports import SCHEMES
from aibx.loader import load
from aibx.provisioners import CompileContext, CompileOptions, compile_step
from aibx.swagger_tables import SCHEMAS
from aibx.translators import AibOptions, PackerInputs, aib_to_packer, packer_to_aib, read_packer
from aibx.validation import validate
from tests.conftest import FIXTURES, ROOT
from tests.support.cli import invoke
from tests.support.templates import write_template

DOC = ROOT / "docs" / "compatibility.md"
COLUMNS = ["validate", "to Packer", "from Packer", "run ssh", "run local", "run winrm"]
VALUES = {"yes", "approx", "no", "—"}
STEP_CLASSES = [c for c in model.Step.__subclasses__() if c.kind]


def read_table() -> dict[str, dict[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split("<!-- compatibility-table -->")[1].split("<!-- /compatibility-table -->")[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in body.strip().splitlines()]
    header, rows = rows[0], rows[2:]
    assert header[1:7] == COLUMNS
    return {r[0]: dict(zip(COLUMNS, r[1:7], strict=True)) for r in rows}


TABLE = read_table()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def union(definition: str, key: str) -> set[str]:
    return {name for defs in SCHEMAS.values() for name in defs.get(definition, {}).get(key, {})}


def test_every_cell_says_something_known() -> None:
    for feature, cells in TABLE.items():
        assert set(cells.values()) <= VALUES, (feature, cells)


def test_every_feature_of_the_model_and_the_swagger_has_a_row() -> None:
    wanted = {"location", "tags", "identity"}
    for cls in STEP_CLASSES:
        wanted.add(f"customizer {cls.kind}")
        # an engine-only field (a Packer semantic the AIB format has no place for) is not an AIB feature
        fields = [f for f in dataclasses.fields(cls) if f.name != "path" and not f.metadata.get("engine_only")]
        wanted |= {f"{cls.kind}.{camel(f.name)}" for f in fields}
    wanted |= {f"validator {v}" for v in union("ImageTemplateInVMValidator", "variants")}
    wanted |= {f"source {c.kind}" for c in model.Source.__subclasses__() if c.kind}
    wanted |= {f"distribute {c.kind}" for c in model.Distributor.__subclasses__() if c.kind}
    props = {
        n for defs in SCHEMAS.values() for n, s in defs["ImageTemplateProperties"]["props"].items() if not s.get("ro")
    }
    wanted |= {f"properties.{p}" for p in props}
    assert wanted <= set(TABLE), sorted(wanted - set(TABLE))


def test_every_field_row_names_a_field_of_the_swagger() -> None:
    customizers = {v: d for defs in SCHEMAS.values() for v, d in defs["ImageTemplateCustomizer"]["variants"].items()}
    for feature in TABLE:
        if "." in feature and not feature.startswith("properties."):
            kind, field = feature.split(".")
            assert field in union(customizers[kind], "props"), feature
        elif feature.startswith("properties."):
            assert feature.removeprefix("properties.") in union("ImageTemplateProperties", "props"), feature


# ----------------------------------------------------------------------------------------------- translate
_SUBJECT = re.compile(
    r"^properties\.(source|customize\[\d+\]|validate\.inVMValidations\[\d+\]|distribute\[\d+\]) .*\((\w+)\)$"
)
_ROW = {"source": "source", "customize": "customizer", "validate": "validator", "distribute": "distribute"}


def feature_of(subject: str) -> str | None:
    m = _SUBJECT.match(subject)
    if not m:
        return None
    section = re.split(r"[\[.]", m.group(1))[0]
    return f"{_ROW[section]} {m.group(2)}"


AIB_FIXTURES = [
    *sorted((FIXTURES / "translate" / "aib").glob("*.json")),
    FIXTURES / "validate" / "valid" / "preview-2019-05-01-iso.json",
]


@pytest.fixture(scope="module")
def to_packer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """feature -> the statuses of its report entries, over every AIB fixture; and the HCL written."""
    statuses: dict[str, set[str]] = defaultdict(set)
    out = tmp_path_factory.mktemp("hcl")
    for path in AIB_FIXTURES:
        for doc in load(str(path)).documents:
            text, report = aib_to_packer(validate(doc).template, path.parent, source=str(path))
            (out / f"{path.stem}.pkr.hcl").write_text(text)
            for entry in report.entries:
                feature = feature_of(entry.subject)
                if feature:
                    statuses[feature].add(entry.status.value)
                elif entry.subject.startswith("deprovision"):
                    statuses["deprovision (implicit)"].add(entry.status.value)
    statuses["__hcl__"] = {str(out)}
    return statuses


def test_the_to_packer_column(to_packer: dict[str, set[str]]) -> None:
    for feature, cells in TABLE.items():
        claim = cells["to Packer"]
        if " " not in feature or feature.startswith("properties.") or claim == "—":
            continue
        seen = to_packer.get(feature)
        assert seen, f"{feature}: no fixture in {AIB_FIXTURES[0].parent} exercises it"
        if claim == "no":
            assert seen == {"dropped"}, (feature, seen)
        elif claim == "yes":
            assert "mapped" in seen, (feature, seen)
        else:
            assert seen & {"approximated", "mapped"}, (feature, seen)


def test_the_from_packer_column(to_packer: dict[str, set[str]]) -> None:
    """What comes back from Packer: the translate golden outputs, and every AIB fixture's HCL read back."""
    seen: set[str] = {"deprovision (implicit)"}  # read back as AIB's own step (tests/test_translate_roundtrip.py)
    templates = [
        json.loads(p.read_text())
        for p in (FIXTURES / "translate" / "expected" / "packer-to-aib").rglob("*.json")
        if not p.name.endswith((".report.json", ".uploads.json"))
    ]
    hcl = Path(next(iter(to_packer["__hcl__"])))
    for path in sorted(hcl.glob("*.pkr.hcl")):
        config = read_packer(str(path), PackerInputs(env={}, cwd=str(hcl)))
        for translation in packer_to_aib(config, AibOptions(cwd=str(hcl))):
            if translation.template is not None:
                seen |= kinds_of_model(translation.template)
    for t in templates:
        props = t.get("properties") or t["resources"][0]["properties"]
        seen.add(f"source {props['source']['type']}")
        seen |= {f"customizer {s['type']}" for s in props.get("customize", [])}
        seen |= {f"validator {s['type']}" for s in props.get("validate", {}).get("inVMValidations", [])}
        seen |= {f"distribute {d['type']}" for d in props["distribute"]}
    for feature, cells in TABLE.items():
        if " " not in feature or feature.startswith("properties.") or cells["from Packer"] == "—":
            continue
        assert (feature in seen) == (cells["from Packer"] != "no"), (feature, cells["from Packer"])


def kinds_of_model(tpl: model.ImageTemplate) -> set[str]:
    out = {f"customizer {s.kind}" for s in tpl.customize}
    out |= {f"validator {s.kind}" for s in (tpl.validate.in_vm_validations if tpl.validate else [])}
    out |= {f"distribute {d.kind}" for d in tpl.distribute}
    if tpl.source is not None:
        out.add(f"source {tpl.source.kind}")
    return out


# ----------------------------------------------------------------------------------------------- run
SAMPLE_STEPS = {
    "Shell": lambda os_type: model.ShellStep(name="s", inline=["true"]),
    "PowerShell": lambda os_type: model.PowerShellStep(name="p", inline=["Write-Output 1"]),
    "File": lambda os_type: model.FileStep(
        name="f",
        source_uri="https://example.org/f.txt",
        destination="/tmp/f.txt" if os_type is model.OsType.LINUX else "C:\\f.txt",
    ),
    "WindowsRestart": lambda os_type: model.WindowsRestartStep(name="r"),
    "WindowsUpdate": lambda os_type: model.WindowsUpdateStep(name="u"),
}


def runs(kind: str, os_type: model.OsType, phase: str) -> bool:
    template = model.ImageTemplate(file="t.json", os_type=os_type)
    plan = compile_step(SAMPLE_STEPS[kind](os_type), CompileContext(template, CompileOptions(), phase))
    return not plan.blocked


def run_offers(scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether `aibx run` takes a target of this scheme: it tries to connect (port 1 refuses) rather than refusing
    the target. The template fetches nothing, so only loopback is touched."""
    source = {"type": "PlatformImage", "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer",
              "sku": "2022-datacenter", "version": "latest"}  # fmt: skip
    template = write_template(tmp_path, [{"type": "PowerShell", "name": "ps", "inline": ["hostname"]}], source=source)
    monkeypatch.setenv("AIBX_TEST_PASSWORD", "not-used")
    done = invoke(
        "run", template, "--host", f"{scheme}://aibx@127.0.0.1:1", "--connect-timeout", "1s",
        "--password-env", "AIBX_TEST_PASSWORD", "--log", tmp_path / f"{scheme}.log",
    )  # fmt: skip
    return done.code == 3 and "cannot connect" in done.text


def test_the_transport_columns_are_the_transports_aibx_run_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    columns = {c.removeprefix("run ") for c in COLUMNS if c.startswith("run ")}
    assert columns == {s for s in SCHEMES if s != "winrms"}  # winrms:// is WinRM over HTTPS
    assert all(run_offers(scheme, tmp_path, monkeypatch) for scheme in ("ssh", "winrm", "winrms"))


@pytest.mark.parametrize("row", ["customizer", "validator"])
def test_the_run_columns(row: str) -> None:
    """run local: Linux templates; run winrm: Windows templates; run ssh: both (Windows hosts with OpenSSH)."""
    for feature, cells in TABLE.items():
        if not feature.startswith(f"{row} "):
            continue
        kind = feature.split()[1]
        phase = "customize" if row == "customizer" else "validate"
        linux, windows = (runs(kind, os_type, phase) for os_type in (model.OsType.LINUX, model.OsType.WINDOWS))
        expected = {"run local": linux, "run winrm": windows, "run ssh": linux or windows}
        for column, running in expected.items():
            assert (cells[column] in ("yes", "approx")) == running, (feature, column, cells[column])


def test_field_rows_run_where_their_customizer_runs() -> None:
    for feature, cells in TABLE.items():
        if "." in feature and not feature.startswith("properties."):
            parent = TABLE[f"customizer {feature.split('.')[0]}"]
            for column in ("run ssh", "run local", "run winrm"):
                assert (cells[column] == "no") == (parent[column] == "no"), (feature, column)
