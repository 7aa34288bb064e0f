import pytest

from aibx.armexpr import DeploymentContext, ExpressionError, Scope, evaluate_string
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
