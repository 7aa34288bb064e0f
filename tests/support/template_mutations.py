"""Templates and values for the property-based and fuzz tests: the valid fixture templates, option sets, tricky
strings, keys, random JSON, and the check that runs loading, validation and model building."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from aibx import armexpr, model, validation
from aibx.diagnostics import CODES, Diagnostic
from aibx.jsonc import parse
from aibx.loader import LoadOptions, load_text
from tests.conftest import FIXTURES

TEMPLATE_FILES = [
    *sorted((FIXTURES / "validate" / "valid").glob("*.json")),
    FIXTURES / "validate" / "arm" / "deployment.json",
    FIXTURES / "validate" / "arm" / "symbolic-names.json",
    FIXTURES / "validate" / "quickstart" / "placeholders.json",
]


TEMPLATES = [parse(p.read_text())[0] for p in TEMPLATE_FILES]


OPTIONS = [
    LoadOptions(),
    LoadOptions(parameters={"region": "westeurope", "imageTemplateName": "x", "identityName": "id", "replicas": "2"}),
    LoadOptions(api_version="2019-05-01-preview"),
    LoadOptions(context=armexpr.DeploymentContext("sub", "rg", "westeurope"), resource="debianImage"),
]


# strings that steer the loader and the rules into their corners
TRICKY_STRINGS = [
    "[concat('a', parameters('region'))]",
    "[parameters('nope')]",
    "[variables('x')]",
    "[uniqueString(resourceGroup().id)]",
    "[concat(",
    "[ -d /opt ]",
    "[[literal]",
    "[reference('x').id]",
    "[format('{0:D3}', 1)]",
    "[if(true(), json('{}'), createArray(1))]",
    "[resourceGroup().location]",
    "[take(toUpper(string(1)), 0)]",
    "<region>",
    "<imgBuilderId>",
    "Shell",
    "shell",
    "PowerShell",
    "File",
    "WindowsRestart",
    "WindowsUpdate",
    "PlatformImage",
    "ISO",
    "SharedImage",
    "VHD",
    "ManagedImage",
    "UserAssigned",
    "Latest",
    "2018-02-01-preview",
    "2024-02-01",
    "file:///etc/passwd",
    "https://example.org/x?sig=secret",
    "/etc/motd",
    "/tmp/x",
    "5m",
    "include:$true",
    "exclude:($_",
    "A" * 64,
    "\x1b[31mred\u2028",
    "\ud800",
    "",
]


KEYS = [
    "type",
    "name",
    "properties",
    "source",
    "customize",
    "distribute",
    "validate",
    "inVMValidations",
    "scriptUri",
    "script",
    "inline",
    "sha256Checksum",
    "imageVersionID",
    "identity",
    "userAssignedIdentities",
    "targetRegions",
    "replicationRegions",
    "versioning",
    "vmProfile",
    "vnetConfig",
    "runAsSystem",
    "runElevated",
    "apiVersion",
    "resources",
    "parameters",
    "variables",
    "[parameters('k')]",
    "<key>",
]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(TRICKY_STRINGS),
)


json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), children, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(value: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


def get(value: object, path: tuple) -> object:
    for part in path:
        value = value[part]  # type: ignore[index]
    return value


def check_everything(text: str, options: LoadOptions) -> list[Diagnostic]:
    result = load_text(text, "t.json", options)
    diags = list(result.diagnostics)
    for doc in result.documents:
        res = validation.validate(doc)
        diags += res.diagnostics
        tpl = res.template
        assert tpl.effective_build_timeout_minutes > 0
        assert all(isinstance(step.label, str) for step in tpl.steps())
        assert model.from_document(doc, model.OsType.WINDOWS).os_type is model.OsType.WINDOWS
    for d in diags:
        assert d.code in CODES
        line = d.format()
        assert "\n" not in line and "\r" not in line
        json.dumps(d.as_dict())
    return diags
