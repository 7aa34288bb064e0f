"""Reading Bicep: each construct of fixtures/bicep/constructs.bicep, .bicepparam files, modules, unknown values,
positions of diagnostics, syntax aibx cannot read, and the CLI."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from aibx import validation
from aibx.armexpr import DeploymentContext
from aibx.bicep import syntax
from aibx.document import Unresolved
from aibx.loader import LoadOptions, load
from tests.conftest import FIXTURES
from tests.support.cli import invoke

BICEP = FIXTURES / "bicep"
CONTEXT = DeploymentContext("00000000-0000-0000-0000-000000000001", "rg-images", "westus")
PASSWORD = "s3cret-from-the-command-line"


def load_one(path: Path, **kw: object):
    result = load(str(path), LoadOptions(**kw))  # type: ignore[arg-type]
    assert len(result.documents) == 1, [d.format() for d in result.diagnostics]
    return result, result.documents[0]


def constructs(**kw: object):
    kw.setdefault("context", CONTEXT)
    kw.setdefault("parameters", {"adminPassword": PASSWORD})
    return load_one(BICEP / "constructs.bicep", **kw)


def by_code(diags, code: str):
    return [d for d in diags if d.code == code]


# ----------------------------------------------------------------------------------------------- the grammar
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a ?? b.c", "Binary(??, a, Member(b.c))"),
        ("a + b[0]", "Binary(+, a, Index(b))"),
        ("c ? x : y.z", "Ternary(c, x, Member(y.z))"),
        ("!a.b", "Unary(!, Member(a.b))"),
        ("(a ?? b).c", "Member(Binary(??, a, b).c)"),
    ],
)
def test_a_postfix_binds_to_the_last_operand_as_in_bicep(text: str, expected: str) -> None:
    def show(n: object) -> str:
        if isinstance(n, syntax.Name):
            return n.name
        if isinstance(n, syntax.Member):
            return f"Member({show(n.target)}.{n.name})"
        if isinstance(n, syntax.Index):
            return f"Index({show(n.target)})"
        if isinstance(n, syntax.Binary):
            return f"Binary({n.op}, {show(n.left)}, {show(n.right)})"
        if isinstance(n, syntax.Ternary):
            return f"Ternary({show(n.cond)}, {show(n.then)}, {show(n.other)})"
        if isinstance(n, syntax.Unary):
            return f"Unary({n.op}, {show(n.arg)})"
        return type(n).__name__

    program = syntax.parse(f"var v = {text}\n")
    assert show(program.declarations[0].value) == expected


def test_a_call_in_an_array_stays_one_item() -> None:
    program = syntax.parse("var v = [\n  loadTextContent('a.sh')\n  'b'\n]\n")
    value = program.declarations[0].value
    assert isinstance(value, syntax.Arr)
    assert [type(i).__name__ for i in value.items] == ["Call", "Literal"]


def test_strings_keep_blanks_and_escapes_around_interpolations() -> None:
    program = syntax.parse("var v = 'a ${x} ${y} \\'q\\' \\${z}'\n")
    value = program.declarations[0].value
    assert isinstance(value, syntax.Template)
    assert [p if isinstance(p, str) else "EXPR" for p in value.parts] == ["a ", "EXPR", " ", "EXPR", " 'q' ${z}"]


# ----------------------------------------------------------------------------------------------- constructs
def test_params_vars_interpolation_and_functions() -> None:
    result, doc = constructs()
    r = doc.resource
    assert r["type"] == "Microsoft.VirtualMachineImages/imageTemplates"
    assert r["apiVersion"] == doc.api_version == "2022-07-01"
    assert r["name"] == doc.name == "aib-web-template"  # toLower('AIB-${imageName}')
    assert doc.symbolic_name == "imageTemplate"
    assert r["location"] == "westus"  # resourceGroup().location as the default of a param
    assert r["tags"] == {"team": "platform", "image": "aib-web", "unique": "rze4eoksinq7k", "owner": "nobody"}
    props = r["properties"]
    assert props["buildTimeoutInMinutes"] == 90  # replicas > 1 ? 90 : 60
    assert props["vmProfile"] == {"vmSize": "Standard_D2s_v3", "osDiskSizeGB": 84}  # optionalDisk ?? 64, + list[1]
    assert props["source"]["sku"] == "22_04-lts-gen2"  # empty() in a ternary
    inline = props["customize"][2]["inline"]
    assert inline == ["apt-get install -y nginx curl", "echo web", "echo 2 0:nginx", "echo 1 aGk= [10,20]"]
    assert result.diagnostics == []


def test_loops_with_an_index_over_a_range_and_with_a_condition() -> None:
    _, doc = constructs()
    customize = doc.resource["properties"]["customize"]
    assert [s["name"] for s in customize] == ["step-one", "step-two", "packages", "setup", "encoded", "password"]
    assert doc.resource["properties"]["distribute"][0]["replicationRegions"] == ["region1", "region2"]


def test_symbolic_references_become_resource_ids_and_names() -> None:
    _, doc = constructs()
    ids = doc.resource["identity"]["userAssignedIdentities"]
    prefix = f"/subscriptions/{CONTEXT.subscription_id}/resourceGroups/rg-images/providers"
    assert list(ids) == [f"{prefix}/Microsoft.ManagedIdentity/userAssignedIdentities/aib-web-identity"]
    target = doc.resource["properties"]["distribute"][0]
    assert target["galleryImageId"] == f"{prefix}/Microsoft.Compute/galleries/gallery_web/images/definition"
    assert target["runOutputName"] == "gallery_web-out"


def test_local_files_are_read_beside_the_bicep_file() -> None:
    _, doc = constructs()
    steps = doc.resource["properties"]["customize"]
    script = (BICEP / "scripts" / "setup.sh").read_text()
    assert steps[3]["inline"] == [script]
    assert steps[4]["sourceUri"].endswith("IyEvYmluL3NoCmVjaG8gc2V0IHVwCg==")


def test_a_secure_parameter_is_a_secret_never_shown() -> None:
    _, doc = constructs()
    assert doc.secure_parameters == {"adminPassword"}
    assert PASSWORD in doc.secrets
    assert doc.secret_names[PASSWORD] == "adminPassword"
    diag = doc.diagnostic("AIB011", f"bad {PASSWORD}", ("properties", "customize", 5))
    assert PASSWORD not in diag.format()


def test_without_azure_context_values_are_unknown_and_no_error() -> None:
    result, doc = load_one(BICEP / "constructs.bicep")
    assert isinstance(doc.resource["location"], Unresolved)
    checked = validation.validate(doc)
    diags = result.diagnostics + checked.diagnostics
    assert not [d for d in diags if d.severity.value == "error"], [d.format() for d in diags]
    unknown = by_code(diags, "AIB005")
    assert {d.json_path for d in unknown} >= {
        "location",
        'identity.userAssignedIdentities["${identity.id}"]',
        "properties.distribute[0].galleryImageId",
        "properties.customize[5].inline[0]",
    }
    assert len({(d.json_path, d.message) for d in unknown}) == len(unknown)  # each reported once
    where = next(d for d in unknown if d.json_path == "properties.customize[5].inline[0]")
    assert "adminPassword" in where.message and (where.line, where.column) == (117, 11)


# ----------------------------------------------------------------------------------------------- parameters
def test_a_bicepparam_file_gives_values_and_names_its_template() -> None:
    result, doc = load_one(BICEP / "constructs.bicepparam", context=CONTEXT)
    assert doc.file.endswith("constructs.bicep")
    assert doc.resource["name"] == "aib-api-template"
    assert doc.resource["properties"]["distribute"][0]["replicationRegions"] == ["region1", "region2", "region3"]
    assert doc.resource["tags"]["owner"] == "alice"  # labels.?owner
    assert "hunter2-from-bicepparam" in doc.secrets
    assert result.diagnostics == []


def test_minus_p_wins_over_a_bicepparam_file_and_is_typed() -> None:
    _, doc = load_one(
        BICEP / "constructs.bicep",
        context=CONTEXT,
        parameter_files=[str(BICEP / "constructs.bicepparam")],
        parameters={"imageName": "cli", "replicas": "1"},
    )
    assert doc.resource["name"] == "aib-cli-template"
    assert doc.resource["properties"]["buildTimeoutInMinutes"] == 60
    assert doc.resource["properties"]["distribute"][0]["replicationRegions"] == ["region1"]


def test_an_arm_json_parameters_file_works_for_bicep_too(tmp_path: Path) -> None:
    pfile = tmp_path / "p.json"
    pfile.write_text(json.dumps({"parameters": {"vmSize": {"value": "Standard_D4s_v3"}, "nope": {"value": 1}}}))
    result = load(str(BICEP / "constructs.bicep"), LoadOptions(parameter_files=[str(pfile)], context=CONTEXT))
    assert result.documents[0].resource["properties"]["vmProfile"]["vmSize"] == "Standard_D4s_v3"
    (typo,) = by_code(result.diagnostics, "AIB007")
    assert typo.file == str(pfile) and "declares no parameter 'nope'" in typo.message


def test_a_bad_minus_p_value_is_refused_by_type() -> None:
    result = load(str(BICEP / "constructs.bicep"), LoadOptions(parameters={"replicas": "many"}))
    (diag,) = by_code(result.diagnostics, "AIB007")
    assert diag.file == "<command line>" and "needs a JSON value such as 3" in diag.message


# ----------------------------------------------------------------------------------------------- positions
def test_diagnostics_point_where_the_value_was_written_through_loops_and_variables() -> None:
    result, doc = load_one(BICEP / "broken" / "errors.bicep")
    checked = validation.validate(doc)
    diags = {d.code: d for d in result.diagnostics + checked.diagnostics}
    assert (diags["AIB007"].line, diags["AIB007"].column) == (6, 21)  # the default 'medium' against @allowed
    assert (diags["AIB006"].line, diags["AIB006"].json_path) == (44, "properties.distribute[0].artifactTags.bad")
    assert (diags["AIB015"].line, diags["AIB015"].column) == (8, 15)  # var timeout = 5
    assert diags["AIB015"].json_path == "properties.buildTimeoutInMinutes"
    assert (diags["AIB013"].line, diags["AIB013"].json_path) == (11, "properties.customize[1].name")  # in the loop


def test_syntax_aibx_cannot_read_names_the_construct_line_and_the_fallback() -> None:
    result = load(str(BICEP / "broken" / "syntax.bicep"))
    assert result.documents == []
    (diag,) = result.diagnostics
    assert diag.code == "AIB002" and diag.line == 8
    assert "an object" in diag.message and "az bicep build" in diag.message


def test_newer_type_syntax_is_a_warning_and_the_template_is_still_read(tmp_path: Path) -> None:
    text = (BICEP / "modules" / "template.bicep").read_text()
    text = text.replace(
        "param scripts array",
        "param scripts resourceInput<'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01'>.properties.customize",
    )
    path = tmp_path / "typed.bicep"
    path.write_text(text)
    result = load(str(path), LoadOptions(parameters={"name": "n", "identityId": "x", "scripts": "[]"}))
    assert len(result.documents) == 1
    assert {d.code for d in result.diagnostics} == {"AIB005"}


# ----------------------------------------------------------------------------------------------- modules
def test_an_image_template_in_a_local_module_gets_the_callers_params() -> None:
    result, doc = load_one(BICEP / "with-module.bicep")
    assert doc.file.endswith("template.bicep")
    assert doc.resource["name"] == "from-module"
    assert [s["inline"] for s in doc.resource["properties"]["customize"]] == [["echo one"], ["echo two"]]
    (registry,) = result.diagnostics
    assert registry.code == "AIB005" and registry.severity.value == "warning" and "registry" in registry.message
    assert validation.validate(doc).diagnostics == []


def test_a_file_whose_only_module_is_in_a_registry_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "avm.bicep"
    module = "br/public:avm/ptn/virtual-machine-images/azure-image-builder:0.2.2"
    path.write_text(f"module it '{module}' = {{\n  name: 'x'\n}}\n")
    result = load(str(path))
    assert result.documents == [] and result.unrelated
    assert [d.severity.value for d in result.diagnostics] == ["warning"]


def test_local_files_outside_the_folder_need_allow_local_files(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    shutil.copytree(BICEP, inner)
    (tmp_path / "outside.sh").write_text("echo outside\n")
    path = inner / "constructs.bicep"
    path.write_text(path.read_text().replace("loadTextContent('scripts/setup.sh')", "loadTextContent('../outside.sh')"))
    _, doc = load_one(path, parameters={"adminPassword": PASSWORD})
    refused = doc.resource["properties"]["customize"][3]["inline"][0]
    assert isinstance(refused, Unresolved) and "--allow-local-files" in refused.reason
    _, doc = load_one(path, parameters={"adminPassword": PASSWORD}, allow_local_files=True)
    assert doc.resource["properties"]["customize"][3]["inline"] == ["echo outside\n"]


# ----------------------------------------------------------------------------------------------- the CLI
def test_validate_takes_bicep_files_and_folders() -> None:
    out = invoke("validate", str(BICEP / "constructs.bicep"), "-p", f"adminPassword={PASSWORD}")
    assert out.code == 0, out.text
    assert PASSWORD not in out.text
    out = invoke("validate", str(BICEP / "broken" / "errors.bicep"))
    assert out.code == 2 and "errors.bicep:6:21" in out.text and "Traceback" not in out.text


def test_a_folder_holds_bicepparam_files_too(tmp_path: Path) -> None:
    """A .bicepparam file in a folder is validated through the template it is `using`, with its values."""
    (tmp_path / "main.bicep").write_text(
        "param runOutputName string = 'fine'\n"
        "resource t 'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01' = {\n"
        "  name: 'folder'\n"
        "  location: 'westeurope'\n"
        "  identity: { type: 'UserAssigned', userAssignedIdentities: { '/subscriptions/0/resourceGroups/r/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/id': {} } }\n"
        "  properties: {\n"
        "    source: { type: 'PlatformImage', publisher: 'Canonical', offer: 'o', sku: 's', version: 'latest' }\n"
        "    distribute: [ { type: 'ManagedImage', imageId: '/subscriptions/0/resourceGroups/r/providers/"
        "Microsoft.Compute/images/i', location: 'westeurope', runOutputName: runOutputName } ]\n"
        "  }\n"
        "}\n"
    )
    (tmp_path / "dev.bicepparam").write_text("using './main.bicep'\nparam runOutputName = 'not allowed!'\n")
    out = invoke("validate", str(tmp_path))
    assert out.code == 2, out.text
    assert "2 files, 2 templates" in out.text and "dev.bicepparam:2:" in out.text, out.text


def test_plan_compiles_a_bicep_template() -> None:
    out = invoke("plan", str(BICEP / "with-module.bicep"), "--format", "json")
    assert out.code == 0, out.text
    assert "echo two" in out.out


def test_lambdas_nested_resources_and_nulls() -> None:
    result, doc = load_one(BICEP / "newer-syntax.bicep")
    r = doc.resource
    ids = list(r["identity"]["userAssignedIdentities"])
    assert len(ids) == 1 and ids[0].endswith("/userAssignedIdentities/builder")  # reduce(map(...), union)
    subnet = r["properties"]["vmProfile"]["vnetConfig"]["subnetId"]
    assert subnet == (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/network/providers/"
        "Microsoft.Network/virtualNetworks/vnet/subnets/builders"
    )
    assert r["properties"]["vmProfile"]["osDiskSizeGB"] == 64
    assert "stagingResourceGroup" not in r["properties"]  # a null property is left out, as ARM does
    inline = r["properties"]["customize"][0]["inline"]
    assert inline == ["apt-get install -y nginx curl", "False", "CURL", "DONE!"]
    assert result.diagnostics == []
    assert validation.validate(doc).diagnostics == []


def test_a_type_aibx_cannot_read_is_a_warning_not_a_verdict(tmp_path: Path) -> None:
    path = tmp_path / "typed.bicep"
    text = (BICEP / "newer-syntax.bicep").read_text()
    path.write_text(text + "\ntype lockType = {\n  name: string?\n}?\n\ntype listType = {\n  a: string\n}[]?\n")
    result = load(str(path))
    assert len(result.documents) == 1
    assert [(d.code, d.severity.value) for d in result.diagnostics] == [("AIB005", "warning")]


def test_damaged_and_deeply_nested_files_get_diagnostics_never_a_traceback(tmp_path: Path) -> None:
    chain = "\n".join(f"var v{i} = v{i + 1}" for i in range(3000))
    cases = [
        chain + "\nvar v3000 = 'x'\nresource t 'Microsoft.VirtualMachineImages/imageTemplates@2022-07-01' = {\n"
        "  name: v0\n}\n",
        "var a = " + "[" * 3000 + "]" * 3000 + "\n",
        "var a = " + "(" * 3000 + "1" + ")" * 3000 + "\n",
    ]
    text = (BICEP / "constructs.bicep").read_text()
    cases += [text[:cut] for cut in range(0, len(text), 97)]
    for i, case in enumerate(cases):
        path = tmp_path / "scripts" / ".." / f"case{i}.bicep"
        (tmp_path / "scripts").mkdir(exist_ok=True)
        path.write_text(case)
        result = load(str(path))
        for doc in result.documents:
            validation.validate(doc)
    deep = load(str(tmp_path / "case0.bicep"))
    assert any(d.code == "AIB006" and "nested too deeply" in d.message for d in deep.diagnostics)


def test_syntax_aibx_cannot_read_outside_the_template_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "unreadable.bicep"
    text = (BICEP / "newer-syntax.bicep").read_text()
    path.write_text(text.replace("var wanted =", "var extra = {\n  %%byName\n}\nvar wanted =", 1))
    result = load(str(path))
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity.value, diag.line) == ("AIB002", "warning", 16)  # the line of %%byName
    assert "'extra' is left out" in diag.message
    assert len(result.documents) == 1 and validation.validate(result.documents[0]).diagnostics == []


def test_a_value_from_a_bicepparam_file_or_a_modules_caller_is_pointed_at_there(tmp_path: Path) -> None:
    shutil.copytree(BICEP, tmp_path / "b")
    params = tmp_path / "b" / "bad.bicepparam"
    params.write_text(
        "using './constructs.bicep'\n\nparam adminPassword = 'pa55word'\nparam labels = {\n  team: 5\n}\n"
    )
    (doc,) = load(str(params), LoadOptions(context=CONTEXT)).documents
    team = next(d for d in validation.validate(doc).diagnostics if d.json_path == "tags.team")  # through union()
    assert (team.code, team.file, team.line, team.column) == ("AIB052", str(params), 5, 9)

    caller = tmp_path / "b" / "with-module.bicep"
    caller.write_text(caller.read_text().replace("name: 'from-module'", "name: ''"))
    (doc,) = load(str(caller)).documents
    name = next(d for d in validation.validate(doc).diagnostics if d.json_path == "name")
    assert (name.file, name.line, name.column) == (str(caller), 7, 11)


def test_a_template_behind_a_false_condition_is_not_deployed_and_no_error(tmp_path: Path) -> None:
    path = tmp_path / "cond.bicep"
    path.write_text(
        "param deploy bool = false\n"
        "resource t 'Microsoft.VirtualMachineImages/imageTemplates@2022-07-01' = if (deploy) {\n  name: 'x'\n}\n"
    )
    result = load(str(path))
    assert result.documents == [] and result.unrelated
    assert [(d.code, d.severity.value, d.line) for d in result.diagnostics] == [("AIB005", "warning", 2)]
    assert len(load(str(path), LoadOptions(parameters={"deploy": "true"})).documents) == 1


def test_a_module_scoped_to_a_resource_group_sees_it_as_resourcegroup(tmp_path: Path) -> None:
    shutil.copytree(BICEP, tmp_path / "b")
    module = tmp_path / "b" / "modules" / "template.bicep"
    module.write_text(module.read_text().replace("name: name\n", "name: '${name}-${resourceGroup().name}'\n", 1))
    caller = tmp_path / "b" / "with-module.bicep"
    caller.write_text(
        caller.read_text().replace("  name: 'template'\n", "  name: 'template'\n  scope: resourceGroup('rg-x')\n", 1)
    )
    (doc,) = load(str(caller)).documents
    assert doc.resource["name"] == "from-module-rg-x"


def test_resource_ids_of_resource_groups_and_subscription_scopes(tmp_path: Path) -> None:
    text = (
        (BICEP / "newer-syntax.bicep")
        .read_text()
        .replace("stagingResourceGroup: subnetId", "stagingResourceGroup: staging.id")
    )
    text += (
        "\nresource staging 'Microsoft.Resources/resourceGroups@2024-03-01' existing = {\n"
        "  name: 'rg-staging'\n  scope: subscription()\n}\n"
    )
    path = tmp_path / "staging.bicep"
    path.write_text(text)
    (doc,) = load(str(path), LoadOptions(context=CONTEXT)).documents
    assert (
        doc.resource["properties"]["stagingResourceGroup"]
        == f"/subscriptions/{CONTEXT.subscription_id}/resourceGroups/rg-staging"
    )


def test_bicep_on_standard_input_is_told_by_its_content(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BICEP)
    text = "// piped\n" + (BICEP / "with-module.bicep").read_text()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    (doc,) = load("-").documents
    assert doc.resource["name"] == "from-module"


def test_a_resource_loop_gives_one_template_each_and_an_unknown_loop_no_error() -> None:
    images = [
        {
            "name": n,
            "source": {
                "type": "PlatformImage",
                "publisher": "Canonical",
                "offer": "o",
                "sku": "s",
                "version": "latest",
            },
        }
        for n in ("a", "b")
    ]
    result = load(str(BICEP / "loop.bicep"), LoadOptions(parameters={"images": json.dumps(images)}))
    assert [d.resource["name"] for d in result.documents] == ["a-0", "b-1"]
    (doc,) = load(str(BICEP / "loop.bicep")).documents  # the loop's values unknown: one template, all unknown
    diags = validation.validate(doc).diagnostics
    assert {d.code for d in diags} == {"AIB005"}
