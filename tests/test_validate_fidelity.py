"""Issue 10, validate classes 1-6: the verdicts on the forms real templates take (fixtures/validate/history,
nested, unknown, not-a-template; each written for the project). One test per class, on the diagnostics themselves."""

from __future__ import annotations

import json

from aibx import armexpr, validation
from aibx.diagnostics import Diagnostic, Severity
from aibx.loader import LoadOptions, load, load_text
from tests.conftest import FIXTURES

HERE = FIXTURES / "validate"


def check(path: str, **options: object) -> list[Diagnostic]:
    result = load(str(HERE / path), LoadOptions(**options))  # type: ignore[arg-type]
    diags = list(result.diagnostics)
    for doc in result.documents:
        diags += validation.validate(doc).diagnostics
    return diags


def errors(diags: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.severity is Severity.ERROR]


def test_class1_features_2019_05_01_preview_accepted_before_its_swagger_listed_them() -> None:
    diags = check("history/accepted-2019-05-01-preview.json")
    # runElevated, sha256Checksum, osDiskSizeGB and WindowsUpdate: no AIB058
    assert not [d for d in diags if d.code == "AIB058"], diags
    # ... and checked against the swagger that lists them: updateLimit must be an integer
    assert [(d.code, d.json_path) for d in errors(diags)] == [("AIB052", "properties.customize[1].updateLimit")]


def test_class2_service_wide_rules_apply_whatever_the_api_version() -> None:
    diags = check("valid/preview-2019-05-01-iso.json")
    assert {d.code for d in errors(diags)} == {"AIB035", "AIB036"}  # no identity; a RHEL ISO source
    old = check("valid/preview-2019-02-01.json")
    assert ("AIB036", "apiVersion") in {(d.code, d.json_path) for d in old}


def test_class3_fields_of_a_later_api_version_are_warnings_where_the_service_ignores_them() -> None:
    diags = check("history/later-fields-2020-02-14.json")
    assert [(d.code, d.severity, d.json_path) for d in diags] == [
        ("AIB058", Severity.WARNING, "properties.stagingResourceGroup")
    ]
    strict = check("broken/schema/AIB058-later-field-2024.json")  # 2024-02-01 rejects unknown fields
    assert [(d.code, d.severity) for d in strict] == [("AIB058", Severity.ERROR)]


def test_class4_image_templates_in_nested_deployments_inner_and_outer_scope() -> None:
    module = load(str(HERE / "nested/bicep-module.json"))
    (doc,) = module.documents
    assert doc.name == "demo-linux"  # a parameter passed from the outer template into the inner scope
    assert doc.resource["properties"]["buildTimeoutInMinutes"] == 3  # the inner default
    (warning,) = validation.validate(doc).diagnostics
    assert (warning.code, warning.line) == ("AIB015", 40)  # the line of the inner template
    solution = load(str(HERE / "nested/solution-template.json"))
    assert [d.name for d in solution.documents] == ["outer-scope-linux", "outer-scope-windows"]
    assert solution.documents[0].resource["location"] == "westeurope"  # outer scope: the outer parameters
    chosen = load(str(HERE / "nested/solution-template.json"), LoadOptions(resource="outer-scope-windows"))
    assert [d.name for d in chosen.documents] == ["outer-scope-windows"]


def test_class5_unknown_values_skip_the_checks_that_need_them_and_lambdas_evaluate() -> None:
    diags = check("unknown/unknown-values.json")
    assert not errors(diags), diags  # no false AIB031 for an identity map from a parameter, no AIB010 for inline
    steps = [d for d in diags if "'steps'" in d.message]
    assert len(steps) == 1 and "1 more place" in steps[0].message  # one unknown value, reported once
    assert check("unknown/lambdas.json") == []
    (doc,) = load(str(HERE / "unknown/lambdas.json")).documents
    assert list(doc.resource["identity"]["userAssignedIdentities"]) == [
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/images-rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/aib-builder"
    ]
    assert doc.resource["properties"]["customize"][0]["inline"] == [
        "sudo apt-get install -y git",
        "sudo apt-get install -y curl",
    ]
    regions = doc.resource["properties"]["distribute"][0]["targetRegions"]
    assert regions == [{"name": "westeurope"}, {"name": "northeurope"}]


def test_class5_lambda_machinery_is_usable_from_outside() -> None:
    double = armexpr.Lambda(("x",), lambda x: x * 2)
    assert armexpr.FUNCTIONS["map"](None, [1, 2], double) == [2, 4]
    scope = armexpr.Scope(parameters={"n": [3, 1, 2]})
    text = "[sort(parameters('n'), lambda('a', 'b', less(lambdaVariables('a'), lambdaVariables('b'))))]"
    assert armexpr.evaluate_string(text, scope) == [1, 2, 3]
    unknown = armexpr.Scope(parameters={"n": armexpr.Unresolved("[parameters('n')]", "no value")})
    assert isinstance(armexpr.evaluate_string(text, unknown), armexpr.Unresolved)


def test_class6_input_that_is_not_a_template_says_what_it_is_and_what_to_do() -> None:
    # a Packer configuration (HCL2 or legacy JSON) is input in its own right now: read through the translation
    for name in ("build.pkr.hcl", "legacy-packer.json"):
        result = load(str(HERE / "not-a-template" / name))
        assert result.documents and all(d.code != "AIB003" for d in result.diagnostics), result.diagnostics
    expected = {
        "image-bicep.txt": "give it a .bicep name",
        "pipeline.yml": "YAML",
        "values.pkrvars.hcl": "--var-file",
        "main.tf": "Terraform",
    }
    for name, hint in expected.items():
        (diag,) = check(f"not-a-template/{name}")
        assert diag.code == "AIB003" and hint in diag.message, diag
    broken = load_text('{"type": }', "broken.json").diagnostics
    assert [d.code for d in broken] == ["AIB002"]  # broken JSON stays a syntax error with its position


def test_class5_an_unknown_api_version_leaves_errors_only_where_every_accepted_version_has_one() -> None:
    diags = check("unknown/api-version-parameter.json")
    by_code = {d.code: d.severity for d in diags}
    assert by_code["AIB053"] is Severity.WARNING  # "shell": rejected from 2024-02-01 on, accepted before
    assert by_code["AIB013"] is Severity.ERROR  # two customizers named "first": wrong in every apiVersion
    assert by_code["AIB008"] is Severity.WARNING


def test_class6_a_placeholder_outside_quotes_is_named() -> None:
    text = '{"parameters": {"name": {"type": "string", "defaultValue": <templateName>}}, "resources": []}'
    (diag,) = load_text(text, "sed-me.json").diagnostics
    assert diag.code == "AIB002" and "<templateName> is a placeholder outside quotes" in diag.message


def test_uri_resolves_a_relative_path_against_a_base() -> None:
    scope = armexpr.Scope(parameters={"base": "https://example.org/templates/main.json"})
    text = "[uri(parameters('base'), 'scripts/run.ps1')]"
    assert armexpr.evaluate_string(text, scope) == "https://example.org/templates/scripts/run.ps1"


def test_class5_property_copy_loops_try_get_and_null_are_evaluated() -> None:
    assert check("unknown/copy-loop.json") == []  # null() and a nullable parameter without a value: not written
    (doc,) = load(str(HERE / "unknown/copy-loop.json")).documents
    props = doc.resource["properties"]
    assert props["distribute"] == [
        {"type": "VHD", "runOutputName": "first-1", "artifactTags": {}},
        {"type": "VHD", "runOutputName": "second-2", "artifactTags": {"team": "images"}},
    ]
    assert props["vmProfile"]["vnetConfig"] is None and props["stagingResourceGroup"] is None
    assert props["customize"] == [  # a variable copy loop
        {"type": "Shell", "name": "install-git", "inline": ["sudo apt-get install -y git"]},
        {"type": "Shell", "name": "install-curl", "inline": ["sudo apt-get install -y curl"]},
    ]
    unknown = load(str(HERE / "unknown/copy-loop.json"), LoadOptions(parameters={"targets": "[]"}))
    assert unknown.documents[0].resource["properties"]["distribute"] == []


def test_array_and_object_functions_bicep_emits() -> None:
    scope = armexpr.Scope(parameters={"o": {"a": {"b": 1}}, "roles": ["x", "y"]})
    cases = {
        "[range(0, length(parameters('roles')))]": [0, 1],
        "[flatten(createArray(createArray(1), createArray(2, 3)))]": [1, 2, 3],
        "[objectKeys(parameters('o'))]": ["a"],
        "[intersection(createArray(1, 2, 3), createArray(3, 2, 9))]": [2, 3],
        "[tryGet(parameters('o'), 'a', 'b')]": 1,
        "[tryGet(parameters('o'), 'missing', 'b')]": None,
    }
    for text, expected in cases.items():
        assert armexpr.evaluate_string(text, scope) == expected, text


def test_class5_a_bare_resource_without_api_version_is_judged_for_every_accepted_version() -> None:
    identity = "/subscriptions/0/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i"
    resource = {
        "type": "Microsoft.VirtualMachineImages/imageTemplates",
        "location": "westeurope",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}},
        "properties": {
            "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "o", "sku": "s", "version": "1"},
            "customize": [{"type": "Shell", "name": "a", "inline": ["true"], "sha256checksum": ""}],
            "distribute": [{"type": "VHD", "runOutputName": "vhd"}],
        },
    }
    text = json.dumps(resource)
    (doc,) = load_text(text, "bare.json").documents
    diags = validation.validate(doc).diagnostics
    wrong_case = [d for d in diags if d.code == "AIB051"]
    assert wrong_case and all(d.severity is Severity.WARNING for d in wrong_case)  # accepted before 2024-02-01


def test_class4_an_existing_image_template_is_a_reference_not_a_template() -> None:
    (diag,) = check("nested/existing-reference.json")
    assert diag.code == "AIB003" and "existing, not deployed here" in diag.message


def test_class4_parameters_typed_by_user_defined_types() -> None:
    assert check("nested/typed-parameters.json") == []  # a $ref type is an object; a nullable one without value is null
    (doc,) = load(str(HERE / "nested/typed-parameters.json")).documents
    assert doc.resource["tags"] is None
    assert len(doc.resource["identity"]["userAssignedIdentities"]) == 1


def test_class4_linked_templates_in_the_folder_are_followed_never_outside_it() -> None:
    main = load(str(HERE / "linked/mainTemplate.json"))
    (doc,) = main.documents  # "../nested/solution-template.json" is outside the folder: not read
    assert doc.name == "linked-linux"  # passed by the solution template's deployment parameters
    assert doc.file.endswith("nestedtemplates/image.json")
    (warning,) = validation.validate(doc).diagnostics
    assert (warning.code, warning.file, warning.line) == ("AIB015", doc.file, 21)
    (relative,) = load(str(HERE / "linked/relative-path.json")).documents
    assert relative.file == doc.file


def test_class5_a_value_that_may_turn_out_null_makes_no_definite_error() -> None:
    # scriptUri may be null() (then inline alone is given); runElevated comes from a parameter without a value
    assert not errors(check("unknown/maybe-null.json"))
    given = {"scriptUri": "https://example.org/a.ps1", "elevated": "false"}
    with_values = check("unknown/maybe-null.json", parameters=given)
    assert sorted(d.code for d in errors(with_values)) == ["AIB010", "AIB012"]  # known now: both wrong


def test_class4_a_resource_whose_condition_is_false_is_not_deployed() -> None:
    skipped = check("nested/condition.json")
    assert skipped and not errors(skipped)  # still reported, as warnings: ARM would not deploy it
    assert "its condition is false" in skipped[0].message
    deployed = check("nested/condition.json", parameters={"buildImage": "true"})
    assert [d.code for d in errors(deployed)] == ["AIB054"]


def test_class4_a_resource_copy_loop_makes_one_image_template_per_iteration() -> None:
    docs = load(str(HERE / "nested/resource-loop.json")).documents
    assert [d.name for d in docs] == ["ubuntu-jammy", "ubuntu-focal"]
    assert [d.resource["properties"]["distribute"][0]["runOutputName"] for d in docs] == ["vhd-1", "vhd-2"]
    (short,) = [d for doc in docs for d in validation.validate(doc).diagnostics]
    assert short.code == "AIB015" and "3 minutes" in short.message  # only the second iteration is too short


def test_class4_a_module_in_a_loop_makes_one_deployment_per_iteration() -> None:
    docs = load(str(HERE / "nested/module-loop.json")).documents
    assert [(d.name, d.resource["properties"]["source"]["sku"]) for d in docs] == [
        ("ubuntu-0", "22_04-lts"),
        ("ubuntu-1", "20_04-lts"),
    ]
    assert check("nested/module-loop.json") == []


SUB = "00000000-0000-0000-0000-000000000000"


def test_class5_user_defined_functions_are_evaluated_and_what_they_cannot_know_is_unknown() -> None:
    # before: every img.*() call was a false AIB006, and so was a resource type with a trailing '/'
    path = "unknown/user-functions.json"
    context = armexpr.DeploymentContext(subscription_id=SUB, resource_group="images-rg")
    diags = check(path, context=context)
    assert [(d.code, d.json_path) for d in diags] == [("AIB005", "resources[0].properties.vmProfile.vmSize")]
    assert "img.builderSize(): reference()" in diags[0].message  # unknown, reported once, never an error
    (doc,) = load(str(HERE / path), LoadOptions(context=context)).documents
    assert doc.name == "demo-run"
    (dist,) = doc.resource["properties"]["distribute"]
    assert dist["galleryImageId"] == (
        f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/gallery/images/jammy"
    )
    assert dist["runOutputName"] == "demo-run"
    (identity,) = doc.resource["identity"]["userAssignedIdentities"]
    assert identity.endswith("/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib-builder")
    assert not errors(check(path))  # without a subscription: unknown values, still no error


def test_user_defined_functions_see_only_their_parameters() -> None:
    spec = {
        "parameters": [{"name": "x", "type": "string"}],
        "output": {"type": "string", "value": "[concat(parameters('x'), '!')]"},
    }
    functions = armexpr.template_functions(
        {
            "functions": [
                {
                    "namespace": "ns",
                    "members": {
                        "shout": spec,
                        "twice": {"parameters": [], "output": {"type": "string", "value": "[ns.shout(ns.shout('a'))]"}},
                        "leaky": {"parameters": [], "output": {"type": "string", "value": "[variables('v')]"}},
                        "loop": {"parameters": [], "output": {"type": "string", "value": "[ns.loop()]"}},
                    },
                }
            ]
        }
    )
    scope = armexpr.Scope(parameters={"x": "outer"}, variables={"v": "secret"}, functions=functions)
    assert armexpr.evaluate_string("[NS.Shout('hi')]", scope) == "hi!"  # names are case-insensitive
    assert armexpr.evaluate_string("[ns.twice()]", scope) == "a!!"
    unknown = armexpr.evaluate_string("[ns.shout(reference('r').x)]", scope)
    assert isinstance(unknown, armexpr.Unresolved)
    for text, message in [
        ("[ns.leaky()]", "variables() cannot be used in the user-defined function ns.leaky()"),
        ("[ns.loop()]", "calls itself"),
        ("[ns.shout()]", "takes 1 argument(s), got 0"),
        ("[ns.missing()]", "the template defines no function ns.missing()"),
        ("[ns.shout]", "must be called as a function"),
    ]:
        try:
            armexpr.evaluate_string(text, scope)
        except armexpr.ExpressionError as exc:
            assert message in str(exc), (text, exc)
        else:
            raise AssertionError(f"{text} evaluated")


def test_user_defined_functions_that_fan_out_are_bounded() -> None:
    members = {
        f"f{i}": {"parameters": [], "output": {"type": "string", "value": f"[concat(ns.f{i + 1}(), ns.f{i + 1}())]"}}
        for i in range(40)
    }
    members["f40"] = {"parameters": [], "output": {"type": "string", "value": "x"}}
    scope = armexpr.Scope(
        functions=armexpr.template_functions({"functions": [{"namespace": "ns", "members": members}]})
    )
    try:
        armexpr.evaluate_string("[ns.f0()]", scope)  # 2**40 calls unbounded
    except armexpr.ExpressionError as exc:
        assert "called more than 10,000 times" in str(exc)
    else:
        raise AssertionError("2**40 calls evaluated")


def test_resource_id_functions_follow_arm() -> None:
    scope = armexpr.Scope(context=armexpr.DeploymentContext(subscription_id=SUB, resource_group="rg"))
    cases = {
        "[resourceId('Microsoft.Compute/galleries/images/', 'g', 'i')]": (
            f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i"
        ),
        "[resourceId('other', 'rg2', 'Microsoft.Compute/images', 'x')]": (
            "/subscriptions/other/resourceGroups/rg2/providers/Microsoft.Compute/images/x"
        ),
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'r')]": (
            f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/r"
        ),
        "[subscriptionResourceId('s2', 'Microsoft.Authorization/roleDefinitions', 'r')]": (
            "/subscriptions/s2/providers/Microsoft.Authorization/roleDefinitions/r"
        ),
        "[tenantResourceId('Microsoft.Authorization/policyDefinitions', 'p')]": (
            "/providers/Microsoft.Authorization/policyDefinitions/p"
        ),
        "[extensionResourceId('/subscriptions/s/resourceGroups/r', 'Microsoft.Resources/deployments', 'd')]": (
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Resources/deployments/d"
        ),
        "[dataUriToString(dataUri('hello'))]": "hello",
        "[base64ToJson(base64('{\"a\": 1}')).a]": 1,
    }
    for text, expected in cases.items():
        assert armexpr.evaluate_string(text, scope) == expected, text
    # only Azure knows a subscription's tenant and name: unknown, not "no property"
    assert isinstance(armexpr.evaluate_string("[subscription().tenantId]", scope), armexpr.Unresolved)
    bare = armexpr.Scope()
    assert isinstance(
        armexpr.evaluate_string("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'r')]", bare),
        armexpr.Unresolved,
    )
