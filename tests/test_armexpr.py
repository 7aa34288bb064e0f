import pytest

from aibx.armexpr import DeploymentContext, ExpressionError, Scope, evaluate_string, is_well_formed, unique_string
from aibx.document import Unresolved


def scope(**params):
    return Scope(
        parameters=params,
        variables={"prefix": "[concat(parameters('env'), '-img')]", "loop": "[variables('loop')]"},
        context=DeploymentContext(subscription_id="sub1", resource_group="rg1", location="westeurope"),
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("[parameters('env')]", "prod"),
        ("[concat(parameters('env'), '-', 'x')]", "prod-x"),
        ("[variables('prefix')]", "prod-img"),
        ("[format('{0}-{1}', 'a', 2)]", "a-2"),
        ("[toLower('ABC')]", "abc"),
        ("[toUpper(parameters('env'))]", "PROD"),
        ("[string(3)]", "3"),
        ("[subscription().subscriptionId]", "sub1"),
        ("[resourceGroup().location]", "westeurope"),
        ("[resourceGroup().id]", "/subscriptions/sub1/resourceGroups/rg1"),
        (
            "[resourceId('Microsoft.Compute/galleries/images', 'gal', 'img')]",
            "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Compute/galleries/gal/images/img",
        ),
        ("[[not an expression]", "[not an expression]"),
        ("['it''s']", "it's"),
        ("[if(equals(parameters('env'), 'prod'), 1, 2)]", 1),
        ("plain", "plain"),
    ],
)
def test_evaluates_what_real_templates_use(expr, expected):
    assert evaluate_string(expr, scope(env="prod")) == expected


def test_unknown_values_stay_unresolved_with_a_reason():
    value = evaluate_string("[concat(parameters('env'), reference('x').id)]", scope(env="prod"))
    assert isinstance(value, Unresolved)
    assert "reference()" in value.reason
    missing = evaluate_string("[parameters('env')]", scope(env=Unresolved("[parameters('env')]", "no value")))
    assert isinstance(missing, Unresolved) and missing.reason == "no value"
    no_ctx = evaluate_string("[resourceGroup().location]", Scope())
    assert isinstance(no_ctx, Unresolved) and "--resource-group" in no_ctx.reason


@pytest.mark.parametrize(
    "expr",
    ["[concat('a']", "[parameters('nope')]", "[variables('loop')]", "[format('{1}', 'a')]", "[1 2]", "[]"],
)
def test_malformed_expressions_raise_expression_error(expr):
    with pytest.raises(ExpressionError):
        evaluate_string(expr, scope(env="prod"))


# uniqueString(): "test" -> rbgf3xv4ufgzg is what Microsoft's Azure.Deployments.Expression library returns (a
# public tool built on it prints it in its README); the others were checked against Bicep's uniqueString() by
# another independent implementation. aibx's implementation is its own.
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["test"], "rbgf3xv4ufgzg"),
        (["hello", "world"], "a7wkljktk6wne"),
        (["abc"], "cgtzqvhu4i23s"),
        (["/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-rg"], "bmg7c6xu4tw46"),
        (["foo", "bar", "baz"], "xzi4ioaxtmth4"),
    ],
)
def test_unique_string_matches_azure_resource_manager(args, expected):
    assert unique_string(*args) == expected
    quoted = ", ".join(f"'{a}'" for a in args)
    assert evaluate_string(f"[uniqueString({quoted})]", Scope()) == expected


def test_unique_string_of_the_resource_group_id_needs_the_context():
    ctx = DeploymentContext(subscription_id="00000000-0000-0000-0000-000000000000", resource_group="my-rg")
    assert evaluate_string("[uniqueString(resourceGroup().id)]", Scope(context=ctx)) == "bmg7c6xu4tw46"
    unknown = evaluate_string("[uniqueString(resourceGroup().id)]", Scope())
    assert isinstance(unknown, Unresolved) and "--resource-group" in unknown.reason
    with pytest.raises(ExpressionError, match="takes one or more strings"):
        evaluate_string("[uniqueString(1)]", Scope())


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("[take('abcdef', 3)]", "abc"),
        ("[take(createArray(1, 2, 3), 5)]", [1, 2, 3]),
        ("[skip('abcdef', 4)]", "ef"),
        ("[substring('abcdef', 1, 3)]", "bcd"),
        ("[substring('abcdef', 2)]", "cdef"),
        ("[first('abc')]", "a"),
        ("[last(createArray('x', 'y'))]", "y"),
        ("[indexOf('Hello', 'LL')]", 2),
        ("[lastIndexOf('abcabc', 'B')]", 4),
        ("[padLeft(7, 3, '0')]", "007"),
        ("[base64('ab')]", "YWI="),
        ("[base64ToString('YWI=')]", "ab"),
        ("[uriComponent('a b/c')]", "a%20b%2Fc"),
        ("[uriComponentToString('a%20b')]", "a b"),
        ("[add(1, 2)]", 3),
        ("[sub(1, 2)]", -1),
        ("[mul(3, 4)]", 12),
        ("[div(-7, 2)]", -3),
        ("[mod(-7, 2)]", -1),
        ("[min(3, 1, 2)]", 1),
        ("[max(createArray(3, 9, 2))]", 9),
        ("[greater(2, 1)]", True),
        ("[lessOrEquals('a', 'b')]", True),
        ("[union(createObject('a', 1), createObject('b', 2))]", {"a": 1, "b": 2}),
        ("[union(createArray(1, 2), createArray(2, 3))]", [1, 2, 3]),
        ("[join(createArray('a', 'b'), '-')]", "a-b"),
        ("[contains('Hello', 'ell')]", True),
        ("[contains('Hello', 'ELL')]", False),
        ("[contains(createObject('Key', 1), 'key')]", True),
        ("[startsWith('Hello', 'he')]", True),
        ("[string(true())]", "True"),
        ("[string(createObject('a', 1))]", '{"a":1}'),
        ("[format('{0}-{{1}}', 'a')]", "a-{1}"),
        ("[length(split('a,b;c', createArray(',', ';')))]", 3),
        ("[json('{\"a\": [1]}').a[0]]", 1),
        ("[coalesce(null(), 'x')]", "x"),
        ("[toLower(parameters('env'))]", "prod"),
    ],
)
def test_string_number_and_collection_functions(expr, expected):
    assert evaluate_string(expr, scope(env="PROD")) == expected


def test_format_specifiers_are_left_unresolved_rather_than_guessed():
    value = evaluate_string("[format('{0:D3}', 7)]", Scope())
    assert isinstance(value, Unresolved) and "format specifier" in value.reason


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("[parameters('envv')]", "did you mean 'env'"),
        ("[variables('prefx')]", "did you mean 'prefix'"),
        ("[div(1, 0)]", "division by zero"),
        ("[substring('abc', 2, 5)]", "outside the string"),
        ("[add('1', 2)]", "takes integers"),
        ("[" + "concat(" * 100 + "'x'" + ")" * 100 + "]", "nested more than"),
    ],
)
def test_mistakes_are_expression_errors_with_a_hint(expr, message):
    with pytest.raises(ExpressionError, match=message):
        evaluate_string(expr, scope(env="prod"))


def test_variables_referring_to_each_other_thousands_deep_are_an_error_not_a_crash():
    variables = {f"v{i}": f"[variables('v{i + 1}')]" for i in range(3000)}
    variables["v3000"] = "end"
    with pytest.raises(ExpressionError, match="nested too deeply"):
        evaluate_string("[variables('v0')]", Scope(variables=variables))


def test_is_well_formed_tells_expressions_from_shell_tests():
    assert is_well_formed("[concat('a', 'b')]")
    assert is_well_formed("[resourceGroup().location]")
    assert not is_well_formed("[ -d /opt ]")
    assert not is_well_formed("[x]")
    assert not is_well_formed("[[literal]")
