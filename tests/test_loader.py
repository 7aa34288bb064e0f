"""The loader: bare resources, ARM deployment templates, parameters, placeholders, positions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from aibx import validation
from aibx.armexpr import DeploymentContext
from aibx.document import Unresolved
from aibx.loader import LoadOptions, load, load_text, unused_assignments

RESOURCE = {
    "type": "Microsoft.VirtualMachineImages/imageTemplates",
    "apiVersion": "2024-02-01",
    "location": "westeurope",
    "properties": {"source": {"type": "PlatformImage"}, "distribute": []},
}


def deployment(resource: dict, parameters: dict | None = None, variables: dict | None = None) -> str:
    return json.dumps(
        {
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "parameters": parameters or {},
            "variables": variables or {},
            "resources": [{"type": "Microsoft.Storage/storageAccounts", "name": "x"}, resource],
        },
        indent=2,
    )


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


def test_a_bare_resource_is_one_document_at_the_root():
    result = load_text(json.dumps(RESOURCE), "t.json")
    assert codes(result) == []
    [doc] = result.documents
    assert doc.prefix == () and not doc.in_deployment and doc.api_version == "2024-02-01"


@pytest.mark.parametrize(
    ("rtype", "message"),
    [(None, '"type" is missing'), ("Microsoft.VirtualMachineImages", '"type" is "Microsoft.VirtualMachineImages"')],
)
def test_a_missing_or_wrong_type_is_a_warning_and_the_template_is_still_checked(rtype, message):
    resource = dict(RESOURCE)
    if rtype is None:
        del resource["type"]
    else:
        resource["type"] = rtype
    result = load_text(json.dumps(resource), "t.json")
    assert codes(result) == ["AIB004"]
    assert message in result.diagnostics[0].message
    assert result.diagnostics[0].severity.value == "warning"
    assert len(result.documents) == 1


def test_comments_and_trailing_commas_are_read_as_arm_reads_them():
    text = """// leading comment
    {
      "type": "Microsoft.VirtualMachineImages/imageTemplates", /* inline */
      "location": "westeurope",
      "properties": {"source": {"type": "PlatformImage",}, "distribute": [],},
    }"""
    result = load_text(text, "t.json")
    assert codes(result) == [] and result.documents[0].resource["properties"]["distribute"] == []


def test_deployment_resources_in_a_list_and_by_symbolic_name():
    listed = load_text(deployment(dict(RESOURCE, name="img")), "t.json")
    assert [d.prefix for d in listed.documents] == [("resources", 1)]
    assert listed.documents[0].in_deployment and listed.documents[0].name == "img"

    symbolic = json.dumps({"languageVersion": "2.0", "resources": {"storage": {"type": "x"}, "image": RESOURCE}})
    [doc] = load_text(symbolic, "t.json").documents
    assert doc.prefix == ("resources", "image") and doc.symbolic_name == "image" and doc.name == "image"


def test_resource_selects_one_template_by_name_symbolic_name_or_path():
    text = json.dumps({"resources": [dict(RESOURCE, name="a"), dict(RESOURCE, name="b")]})
    assert len(load_text(text, "t.json").documents) == 2
    for want in ("B", "resources[1]"):
        [doc] = load_text(text, "t.json", LoadOptions(resource=want)).documents
        assert doc.name == "b"
    missing = load_text(text, "t.json", LoadOptions(resource="c"))
    assert missing.documents == [] and codes(missing) == ["AIB009"]
    assert "found: a, b" in missing.diagnostics[0].message


def test_a_deployment_without_image_templates_names_what_it_has():
    result = load_text(json.dumps({"resources": [{"type": "Microsoft.Network/virtualNetworks"}]}), "t.json")
    assert codes(result) == ["AIB003"] and result.unrelated
    assert "Microsoft.Network/virtualNetworks" in result.diagnostics[0].message


def test_parameters_come_from_p_then_parameter_files_then_defaults(tmp_path: Path):
    params = {
        "fromDefault": {"type": "string", "defaultValue": "default"},
        "fromFile": {"type": "string", "defaultValue": "default"},
        "fromP": {"type": "string", "defaultValue": "default"},
        "count": {"type": "int"},
        "missing": {"type": "string"},
    }
    resource = dict(
        RESOURCE,
        tags={
            "a": "[parameters('fromDefault')]",
            "b": "[parameters('fromFile')]",
            "c": "[parameters('fromP')]",
            "d": "[string(parameters('count'))]",
            "e": "[parameters('missing')]",
        },
    )
    first = tmp_path / "first.parameters.json"
    first.write_text(json.dumps({"parameters": {"fromFile": {"value": "first"}, "fromP": {"value": "file"}}}))
    second = tmp_path / "second.parameters.json"
    second.write_text(json.dumps({"parameters": {"fromFile": {"value": "second"}}}))
    options = LoadOptions(parameters={"fromp": "p", "count": "3"}, parameter_files=[str(first), str(second)])
    result = load_text(deployment(resource, params), "t.json", options)
    assert codes(result) == []
    [doc] = result.documents
    tags = doc.resource["tags"]
    assert tags["a"] == "default" and tags["b"] == "second" and tags["c"] == "p" and tags["d"] == "3"
    assert isinstance(tags["e"], Unresolved) and "pass -p missing=VALUE" in tags["e"].reason
    assert doc.unresolved == {("tags", "e"): tags["e"]}


def test_defaults_may_use_later_parameters_and_the_deployment_context():
    params = {
        "name": {"type": "string", "defaultValue": "[concat('img-', parameters('suffix'))]"},
        "suffix": {"type": "string", "defaultValue": "[uniqueString(resourceGroup().id)]"},
        "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
    }
    resource = dict(RESOURCE, name="[parameters('name')]", location="[parameters('location')]")
    ctx = DeploymentContext("00000000-0000-0000-0000-000000000000", "my-rg", "northeurope")
    [doc] = load_text(deployment(resource, params), "t.json", LoadOptions(context=ctx)).documents
    assert doc.name == "img-bmg7c6xu4tw46" and doc.resource["location"] == "northeurope"


def test_expressions_in_property_names_are_evaluated():
    params = {"identity": {"type": "string", "defaultValue": "aib"}}
    resource = dict(
        RESOURCE,
        identity={
            "type": "UserAssigned",
            "userAssignedIdentities": {
                "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', parameters('identity'))]": {}
            },
        },
    )
    ctx = DeploymentContext("sub", "rg")
    [doc] = load_text(deployment(resource, params), "t.json", LoadOptions(context=ctx)).documents
    assert list(doc.resource["identity"]["userAssignedIdentities"]) == [
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib"
    ]
    # without the context the key stays as written and is reported as unresolved, pointing at the key
    [doc] = load_text(deployment(resource, params), "t.json").documents
    [(path, value)] = doc.unresolved.items()
    assert path[-1] == value.text and path[:2] == ("identity", "userAssignedIdentities")


def test_double_bracket_escapes_a_literal_in_a_deployment_but_not_in_a_bare_resource():
    resource = dict(RESOURCE, tags={"t": "[[not evaluated]"})
    [doc] = load_text(deployment(resource), "t.json").documents
    assert doc.resource["tags"]["t"] == "[not evaluated]"
    [doc] = load_text(json.dumps(resource), "t.json").documents
    assert doc.resource["tags"]["t"] == "[[not evaluated]"  # REST sends it as written


def test_an_expression_in_a_bare_resource_stays_literal_with_a_warning():
    resource = dict(RESOURCE, location="[resourceGroup().location]")
    result = load_text(json.dumps(resource), "t.json")
    assert codes(result) == ["AIB033"]
    assert result.documents[0].resource["location"] == "[resourceGroup().location]"


def test_placeholders_are_substituted_from_p_including_property_names():
    resource = dict(
        RESOURCE,
        location="<region>",
        identity={"type": "UserAssigned", "userAssignedIdentities": {"<id>": {}}},
        properties={
            "source": {"type": "PlatformImage"},
            "customize": [{"type": "Shell", "inline": ["echo <region>", "cat <missing >/dev/null"]}],
            "distribute": [{"type": "VHD", "runOutputName": "<out>"}],
        },
    )
    options = LoadOptions(parameters={"region": "westeurope", "id": "/identities/x"})
    result = load_text(json.dumps(resource), "t.json", options)
    [doc] = result.documents
    assert doc.resource["location"] == "westeurope"
    assert list(doc.resource["identity"]["userAssignedIdentities"]) == ["/identities/x"]
    inline = doc.resource["properties"]["customize"][0]["inline"]
    assert inline == ["echo westeurope", "cat <missing >/dev/null"]  # shell redirection in code is not a placeholder
    [(path, value)] = doc.unresolved.items()
    assert path == ("properties", "distribute", 0, "runOutputName") and "-p out=VALUE" in value.reason
    assert result.names_used == {"region", "id"}


def test_unused_p_names_are_warned_about_once_for_all_files():
    options = LoadOptions(parameters={"regoin": "x"})
    first = load_text(json.dumps(dict(RESOURCE, location="<region>")), "a.json", options)
    second = load_text(json.dumps(RESOURCE), "b.json", options)
    [warning] = unused_assignments({"regoin": "x"}, [first, second])
    assert warning.code == "AIB007" and 'did you mean "region"' in warning.message


def test_parameter_values_are_checked_as_arm_checks_them(tmp_path: Path):
    params = {
        "size": {"type": "int", "minValue": 1, "maxValue": 3},
        "os": {"type": "string", "allowedValues": ["linux", "windows"]},
        "name": {"type": "string", "maxLength": 5},
    }
    pfile = tmp_path / "p.json"
    pfile.write_text(
        json.dumps({"parameters": {"size": {"value": 9}, "os": {"value": "mac"}, "nmae": {"value": "x"}}}, indent=1)
    )
    options = LoadOptions(parameters={"name": "toolongname"}, parameter_files=[str(pfile)])
    result = load_text(deployment(RESOURCE, params), "t.json", options)
    messages = [d.message for d in result.diagnostics]
    assert codes(result) == ["AIB007"] * 4, messages
    assert any("above its maxValue 3" in m for m in messages)
    assert any("not one of its allowedValues" in m for m in messages)
    assert any('no parameter "nmae"' in m and 'did you mean "name"' in m for m in messages)
    assert any(m.startswith("-p name:") and "maxLength 5" in m for m in messages)
    located = [d for d in result.diagnostics if d.file == str(pfile)]
    assert all(d.line > 1 for d in located)


def test_key_vault_references_stay_unresolved(tmp_path: Path):
    pfile = tmp_path / "p.json"
    reference = {"keyVault": {"id": "/vaults/v"}, "secretName": "s"}
    pfile.write_text(json.dumps({"parameters": {"secret": {"reference": reference}}}))
    resource = dict(RESOURCE, tags={"s": "[parameters('secret')]"})
    params = {"secret": {"type": "securestring"}}
    [doc] = load_text(deployment(resource, params), "t.json", LoadOptions(parameter_files=[str(pfile)])).documents
    assert "Key Vault" in doc.resource["tags"]["s"].reason


def test_secure_parameter_values_never_appear_in_diagnostics():
    secret = "hunter2-very-secret"
    params = {"password": {"type": "securestring", "allowedValues": ["other"]}}
    resource = dict(
        RESOURCE,
        properties={
            "source": {"type": "PlatformImage"},
            "distribute": [{"type": "VHD", "runOutputName": "[concat('x ', parameters('password'))]"}],
        },
    )
    result = load_text(deployment(resource, params), "t.json", LoadOptions(parameters={"password": secret}))
    diags = list(result.diagnostics)
    for doc in result.documents:
        diags += validation.validate(doc).diagnostics
    assert any(d.code == "AIB056" for d in diags) and any(d.code == "AIB007" for d in diags)
    assert all(secret not in d.format() for d in diags)


def test_duplicate_keys_are_reported_with_the_position_of_the_one_that_counts():
    text = (
        '{"type": "Microsoft.VirtualMachineImages/imageTemplates",\n "location": "a",\n "properties": {},\n'
        ' "location": "b"}'
    )
    result = load_text(text, "t.json")
    [dup] = result.diagnostics
    assert dup.code == "AIB034" and (dup.line, dup.column) == (4, 2)
    assert result.documents[0].resource["location"] == "b"


def test_parameters_files_and_unrelated_json_are_marked_unrelated():
    params = load_text(json.dumps({"$schema": ".../deploymentParameters.json#", "parameters": {}}), "p.json")
    other = load_text(json.dumps({"name": "package", "version": "1"}), "package.json")
    props_only = load_text(json.dumps({"source": {}, "distribute": []}), "props.json")
    assert params.unrelated and other.unrelated and not props_only.unrelated
    assert "properties" in props_only.diagnostics[0].message


def test_unreadable_files_and_directories_are_aib001(tmp_path: Path):
    for path in (tmp_path / "missing.json", tmp_path):
        result = load(str(path))
        assert codes(result) == ["AIB001"] and result.documents == []


def test_standard_input_is_read_for_a_dash(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(RESOURCE).encode())))
    result = load("-")
    assert result.documents[0].file == "<stdin>"


def test_diagnostics_carry_file_line_column_and_json_path():
    text = deployment(dict(RESOURCE, location="[parameters('nope')]"))
    [diag] = load_text(text, "deploy.json").diagnostics
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "parameters('nope')" in s)
    assert (diag.file, diag.line, diag.json_path) == ("deploy.json", line, "resources[1].location")
    assert diag.column == text.splitlines()[line - 1].index('"[parameters') + 1
