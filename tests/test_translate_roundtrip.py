"""AIB → Packer HCL2 → AIB reproduces every fixture, after the normalisation docs/translate.md describes
("Round trip"): the fields Packer has no place for are removed from both sides, the rest must be equal."""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibx import model
from aibx.document import Unresolved
from aibx.loader import load
from aibx.translators import AibOptions, PackerInputs, aib, aib_to_packer, packer_to_aib, read_packer
from aibx.validation import validate
from tests.translate_cases import AIB_FIXTURES, in_fixtures

_ARM_PARAMETER = re.compile(r"^\[parameters\('([^']+)'\)\]$")


def normalise(tpl: model.ImageTemplate) -> dict[str, Any]:
    """The template as comparable data, without what cannot survive a trip through Packer."""
    res = aib.template_to_resource(tpl)
    res = aib.finish(res, arm=False)
    props = res["properties"]
    for key in ("apiVersion", "identity", "tags"):
        res.pop(key, None)
    for key in ("buildTimeoutInMinutes", "errorHandling", "autoRun", "optimize"):
        props.pop(key, None)
    if "validate" in props:
        props["validate"].pop("continueDistributeOnFailure", None)
        props["validate"].pop("sourceValidationOnly", None)
    staging = "stagingResourceGroup" in props
    if staging:
        res.pop("location", None)
    vnet = props.get("vmProfile", {}).get("vnetConfig", {})
    vnet.pop("proxyVmSize", None)
    vnet.pop("containerInstanceSubnetId", None)
    tags: dict[str, str] = dict(props.pop("managedResourceTags", None) or {})
    for d in props.get("distribute", []):
        d.pop("runOutputName", None)
        d.pop("versioning", None)
        tags.update(d.pop("artifactTags", None) or {})
        if d.get("storageAccountType") == "Standard_LRS":  # the default of AIB and Packer alike
            del d["storageAccountType"]
        if "replicationRegions" in d:  # the same as targetRegions with AIB's defaults (replication_regions)
            d["targetRegions"] = [{"name": r} for r in d.pop("replicationRegions")]
        if d["type"] == "VHD":
            d.pop("uri", None)
        if d["type"] == "ManagedImage" and staging:
            d.pop("location", None)
    props["distribute"] = sorted(props.get("distribute", []), key=lambda d: d["type"])
    props["tags (managed resources and artifacts)"] = tags
    return _placeholders(res)


def _placeholders(value: Any) -> Any:
    """An ARM parameter without a value and a <placeholder> are the same open value."""
    if isinstance(value, str):
        m = _ARM_PARAMETER.match(value)
        return f"<{m.group(1)}>" if m else value
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    if isinstance(value, dict):
        return {k: _placeholders(v) for k, v in value.items()}
    return value


def round_trip(tpl: model.ImageTemplate, folder: Path) -> model.ImageTemplate:
    text, report = aib_to_packer(tpl, folder)
    assert not report.diagnostics, report.diagnostics
    (folder / "t.pkr.hcl").write_text(text)
    config = read_packer(str(folder / "t.pkr.hcl"), PackerInputs(env={}, cwd=str(folder)))
    assert not config.diagnostics, [d.format() for d in config.diagnostics]
    [translation] = packer_to_aib(config, AibOptions(cwd=str(folder)))
    assert translation.template is not None
    return translation.template


@pytest.mark.parametrize("fixture", AIB_FIXTURES)
def test_aib_to_hcl_to_aib_reproduces_the_fixture(fixture: str, tmp_path: Path) -> None:
    with in_fixtures():
        original = validate(load(f"aib/{fixture}").documents[0]).template
    back = round_trip(original, tmp_path)
    expected = normalise(original)
    got = normalise(back)
    if not (original.vm_profile and original.vm_profile.vm_size):  # aibx wrote AIB's default explicitly
        got["properties"].get("vmProfile", {}).pop("vmSize", None)
        if got["properties"].get("vmProfile") == {}:
            del got["properties"]["vmProfile"]
    assert got == expected


# ----------------------------------------------------------------------------------------------- property
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), include_characters="\t"), max_size=30
)
_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_ 0123456789", min_size=1, max_size=20).filter(str.strip)
_SHA = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_URI = st.builds(
    lambda host, path, query: f"https://{host}.example.com/{path}" + (f"?{query}" if query else ""),
    st.text(alphabet="abcdefgh", min_size=1, max_size=8),
    st.text(alphabet="abcXYZ019-_./% ", min_size=1, max_size=25),
    st.text(alphabet="abc=&019", max_size=10),
)
_PATH = st.builds(lambda p: "/tmp/" + p, st.text(alphabet="abc019-_./ '", min_size=1, max_size=20))


def _linux_step() -> st.SearchStrategy[model.Step]:
    return st.one_of(
        st.builds(model.ShellStep, name=st.none() | _NAME, inline=st.lists(_TEXT, min_size=1, max_size=4)),
        st.builds(model.ShellStep, name=st.none() | _NAME, script_uri=_URI, sha256_checksum=st.none() | _SHA),
        st.builds(
            model.FileStep,
            name=st.none() | _NAME,
            source_uri=_URI,
            destination=_PATH,
            sha256_checksum=st.none() | _SHA,
        ),
    )


def _windows_step() -> st.SearchStrategy[model.Step]:
    elevated = st.sampled_from([(None, None), (True, None), (True, True)])
    return st.one_of(
        st.builds(
            lambda name, inline, flags, codes: model.PowerShellStep(
                name=name, inline=inline, run_elevated=flags[0], run_as_system=flags[1], valid_exit_codes=codes
            ),
            st.none() | _NAME,
            st.lists(_TEXT, min_size=1, max_size=4),
            elevated,
            st.none() | st.lists(st.integers(0, 5000), min_size=1, max_size=3),
        ),
        st.builds(model.PowerShellStep, name=st.none() | _NAME, script_uri=_URI, sha256_checksum=st.none() | _SHA),
        st.builds(
            model.FileStep,
            name=st.none() | _NAME,
            source_uri=_URI,
            destination=st.builds(lambda p: "C:\\" + p, st.text(alphabet="abc019-_. '\\", min_size=1, max_size=20)),
            sha256_checksum=st.none() | _SHA,
        ),
        st.builds(
            model.WindowsRestartStep,
            name=st.none() | _NAME,
            restart_command=st.none() | _TEXT,
            restart_check_command=st.none() | _TEXT,
            restart_timeout=st.none() | st.sampled_from(["5m", "1h30m", "90s"]),
        ),
        st.builds(
            model.WindowsUpdateStep,
            name=st.none() | _NAME,
            search_criteria=st.none() | _TEXT,
            filters=st.none() | st.lists(_TEXT, max_size=3),
            update_limit=st.none() | st.integers(1, 5000),
        ),
    )


def _steps_template(os_type: model.OsType, steps: list[model.Step], validators: list[model.Step]):
    windows = os_type is model.OsType.WINDOWS
    tpl = model.ImageTemplate(
        file="generated.json",
        name="generated",
        location="westeurope",
        source=model.PlatformImageSource(
            publisher="MicrosoftWindowsServer" if windows else "Canonical", offer="o", sku="s", version="latest"
        ),
        distribute=[
            model.ManagedImageDistributor(
                image_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i",
                location="westeurope",
            )
        ],
        os_type=os_type,
    )
    tpl.customize = copy.deepcopy(steps)
    if validators:
        tpl.validate = model.Validation(in_vm_validations=copy.deepcopy(validators))
    return tpl


def _comparable(steps: list[model.Step]) -> list[dict[str, Any]]:
    return [aib._step(s) for s in steps]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    os_type=st.sampled_from(list(model.OsType)),
    data=st.data(),
)
def test_any_steps_survive_the_round_trip(os_type: model.OsType, data: st.DataObject, tmp_path: Path) -> None:
    """Random customizers and validators of every type, with awkward text: exactly the same steps come back."""
    strategy = _windows_step() if os_type is model.OsType.WINDOWS else _linux_step()
    # AIB needs unique names (AIB013): a Packer translation renames repeated ones
    steps = data.draw(st.lists(strategy, max_size=5, unique_by=_name_key))
    validators = data.draw(
        st.lists(strategy, max_size=2, unique_by=_name_key).map(lambda xs: [x for x in xs if _can_validate(x)])
    )
    tpl = _steps_template(os_type, steps, validators)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    back = round_trip(tpl, folder)
    assert _comparable(back.customize) == _comparable(steps)
    got_validators = back.validate.in_vm_validations if back.validate else []
    assert _comparable(got_validators) == _comparable(validators)


def _name_key(step: model.Step) -> object:
    return step.name.lower() if isinstance(step.name, str) else id(step)


def _can_validate(step: model.Step) -> bool:
    return isinstance(step, (model.ShellStep, model.PowerShellStep, model.FileStep))


def test_unresolved_values_become_variables_and_come_back_as_placeholders(tmp_path: Path) -> None:
    tpl = _steps_template(model.OsType.LINUX, [model.ShellStep(inline=["true"])], [])
    tpl.location = Unresolved("<region>", "placeholder")
    tpl.vm_profile = model.VmProfile(vm_size=Unresolved("[parameters('size')]", "no value"))
    text, _report = aib_to_packer(tpl, tmp_path)
    assert 'variable "region"' in text and re.search(r"location\s+= var\.region", text)
    assert 'variable "size"' in text
    back = round_trip(tpl, tmp_path)
    assert back.location == Unresolved("<region>", back.location.reason)
    assert back.vm_profile.vm_size.text == "<size>"
