"""Hypothesis strategies for the fuzz tests: hostile values, ARM and HCL expressions generated from their
grammars, AIB templates and ARM deployments built from the valid fixtures and then damaged, Packer HCL2 and
legacy JSON configurations, and byte-level mutations of real files.

The mutated-template strategy of tests/test_validate_properties.py (values replaced by random JSON, keys
deleted, renamed or added) is the starting point; these add what it does not reach: nesting deeper than the
parsers allow, strings of a megabyte, numbers of thousands of digits, odd unicode, expressions that are well
formed enough to be evaluated, ARM parameters and variables that refer to each other, and Packer input.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import strategies as st

from aibx import armexpr
from aibx.translators import hcl_eval
from tests.conftest import FIXTURES
from tests.support.template_mutations import KEYS, TEMPLATES, TRICKY_STRINGS, get, json_values, paths_of

# ----------------------------------------------------------------------------------------------- values
ODD_UNICODE = [
    "\x00",
    "\ufeff",  # a byte-order mark inside a value
    "\u202e",  # right-to-left override
    "\u2028\u2029",
    "\ud800",  # a lone surrogate: valid in a JSON escape, not encodable as UTF-8
    "\U0001f600",
    "e\u0301",  # combining accent
    "\u0130",  # İ: lower() makes it two characters
    "ß",  # upper() makes it two characters
    "\ufb01",  # ﬁ
    "\u0661\u0662",  # Arabic-Indic digits: int() and \\d accept them
    "\uff10\uff11",  # fullwidth digits
    "\u00a0",
    "\u200b\u200d",
    "\t\r\n",
    "\x1b]0;title\x07",
    "％ｓ",
    "\uff3bparameters('a')\uff3d",  # fullwidth brackets
]


def big_number_text() -> st.SearchStrategy[str]:
    """Numbers as text, up to thousands of digits (Python refuses to convert more than 4300)."""
    return st.one_of(
        st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
        st.integers(min_value=-(10**40), max_value=10**40).map(str),
        st.sampled_from(["1e400", "-1e400", "1.5e-400", "0.1", "-0", "2147483648", "-9223372036854775809"]),
    )


huge_strings = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from(["A", "[", "<x>", "{{", "${", "\\", '"', "é", "\U0001f600", "[concat('a', "]),
    st.integers(min_value=1_000, max_value=100_000),
)
odd_strings = st.one_of(
    st.sampled_from(ODD_UNICODE),
    st.lists(st.sampled_from(ODD_UNICODE + TRICKY_STRINGS), min_size=1, max_size=5).map("".join),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
)


def nested(depth: int, leaf: object, kind: str) -> object:
    """``leaf`` inside ``depth`` arrays or objects, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "array" else {"k": value}
    return value


deep_values = st.builds(
    nested,
    st.integers(min_value=50, max_value=600),
    st.sampled_from([1, "x", None]),
    st.sampled_from(["array", "object"]),
)
big_numbers = st.one_of(
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**63, -(2**63) - 1, 1e308, 5e-324, -0.0]),
)


# ----------------------------------------------------------------------------------------------- ARM expressions
ARM_FUNCTION_NAMES = sorted(set(armexpr._FUNCTIONS) | set(armexpr._NEEDS_AZURE) | {"nosuchfunction", "list"})
ARM_NAMES = ["a", "n", "list", "obj", "secret", "missing", "loop", "deep", "A", ""]


def _arm_string_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def arm_expressions(max_leaves: int = 12) -> st.SearchStrategy[str]:
    """ARM expression text (without the brackets), generated from the grammar: calls of every function aibx
    knows (and some it does not), with literals, huge numbers, property access and indexes."""
    literal = st.one_of(
        st.sampled_from(ARM_NAMES).map(_arm_string_literal),
        st.text(max_size=12).map(_arm_string_literal),
        st.sampled_from(["'{0}-{1}'", "'{0:D3}'", "'{{0}}'", "'{9}'", "'a,b,,c'", "'x'''", "'[concat(1)]'"]),
        big_number_text(),
        st.integers(min_value=-5, max_value=300).map(str),
        st.sampled_from(["true", "false", "true()", "null()"]),
    )

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        call = st.builds(
            lambda name, args: f"{name}({', '.join(args)})",
            st.sampled_from(ARM_FUNCTION_NAMES),
            st.lists(children, max_size=4),
        )
        scoped = st.builds(
            lambda fn, name: f"{fn}({_arm_string_literal(name)})",
            st.sampled_from(["parameters", "variables"]),
            st.sampled_from(ARM_NAMES),
        )
        access = st.builds(
            lambda target, key: f"{target}{key}",
            st.one_of(call, scoped),
            st.one_of(
                st.sampled_from([".id", ".name", ".location", ".subscriptionId", ".x", "[0]", "[-1]", "[99]"]),
                children.map(lambda c: f"[{c}]"),
            ),
        )
        return st.one_of(call, scoped, access)

    return st.recursive(literal, extend, max_leaves=max_leaves)


# built once: constructing a recursive strategy is far dearer than drawing from it
ARM_EXPRESSIONS = arm_expressions()
arm_expression_strings = ARM_EXPRESSIONS.map(lambda text: f"[{text}]")
hostile_values = st.one_of(
    json_values,
    odd_strings,
    huge_strings,
    deep_values,
    big_numbers,
    arm_expression_strings,
    st.sampled_from(KEYS).map(lambda k: f"<{k}>"),
    big_number_text(),  # as strings: "3010"-style numbers, and durations such as "999...9m"
    st.builds(lambda n, unit: n + unit, big_number_text(), st.sampled_from(["m", "s", "h", "ms", "1h30m"])),
)


@st.composite
def arm_scopes(draw: st.DrawFn) -> armexpr.Scope:
    """Parameters and variables for the evaluator, including variables that refer to themselves, to each other
    and to a chain hundreds deep."""
    from aibx.document import Unresolved

    depth = draw(st.integers(min_value=1, max_value=1500))
    variables: dict[str, object] = {f"v{i}": f"[variables('v{i + 1}')]" for i in range(depth)}
    variables[f"v{depth}"] = draw(st.one_of(json_values, arm_expression_strings))
    variables.update(
        {
            "loop": "[variables('loop')]",
            "ping": "[variables('pong')]",
            "pong": "[concat(variables('ping'))]",
            "deep": "[variables('v0')]",
            "x": draw(hostile_values),
        }
    )
    parameters = {
        "a": draw(st.one_of(st.just("x"), odd_strings)),
        "n": draw(st.one_of(st.just(3), big_numbers)),
        "list": draw(st.lists(json_values, max_size=5)),
        "obj": draw(st.dictionaries(st.sampled_from(ARM_NAMES), json_values, max_size=4)),
        "secret": Unresolved("[parameters('secret')]", "no value"),
        "A": draw(hostile_values),
    }
    context = armexpr.DeploymentContext(
        subscription_id=draw(st.one_of(st.none(), st.just("0000-sub"), odd_strings)),
        resource_group=draw(st.one_of(st.none(), st.just("rg"), odd_strings)),
        location=draw(st.one_of(st.none(), st.just("westeurope"))),
    )
    return armexpr.Scope(parameters=parameters, variables=variables, context=context)


# ----------------------------------------------------------------------------------------------- AIB templates
def _mutate(draw: st.DrawFn, doc: object, values: st.SearchStrategy[object], rounds: int) -> object:
    duplicated = False  # once per document: repeated, it would grow the document exponentially
    for _ in range(rounds):
        paths = paths_of(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            if draw(st.integers(0, 9)) == 0:
                doc = draw(values)
            continue
        parent, last = get(doc, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "rename", "wrap", "duplicate"]))
        if action == "replace":
            parent[last] = draw(values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(st.sampled_from(KEYS), odd_strings, arm_expression_strings))] = draw(values)
        elif action == "add" and isinstance(parent, list):
            parent.insert(draw(st.integers(0, len(parent))), draw(values))
        elif action == "rename" and isinstance(parent, dict):
            value = parent.pop(last)
            key = str(last)
            new = draw(
                st.sampled_from(
                    [key.lower(), key.upper(), key + "\u200b", f"[concat('{key}')]", f"<{key}>", f"[[{key}", *KEYS]
                )
            )
            parent[new] = value
        elif action == "wrap":
            parent[last] = nested(draw(st.integers(1, 400)), parent[last], draw(st.sampled_from(["array", "object"])))
        elif action == "duplicate" and isinstance(parent, list) and not duplicated:
            duplicated = True
            parent.extend([copy.deepcopy(parent[last])] * draw(st.integers(1, 50)))
    return doc


@st.composite
def damaged_templates(draw: st.DrawFn) -> object:
    """A valid fixture template (bare resource or ARM deployment) damaged by one to six hostile mutations."""
    doc = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    return _mutate(draw, doc, hostile_values, draw(st.integers(min_value=1, max_value=6)))


PARAMETER_TYPES = ["string", "securestring", "int", "bool", "array", "object", "secureObject", "String", "float", 7]


@st.composite
def deployments(draw: st.DrawFn) -> tuple[object, dict[str, str]]:
    """An ARM deployment template around a damaged image template, with parameters (types, defaults that are
    expressions, allowedValues, limits) and variables that use each other, and ``-p`` values for it."""
    resource = draw(damaged_templates())
    if not isinstance(resource, dict) or "resources" in resource:
        resource = copy.deepcopy(TEMPLATES[0])
    resource = dict(resource)
    resource["type"] = draw(st.sampled_from(["Microsoft.VirtualMachineImages/imageTemplates", "[variables('t')]"]))
    names = draw(st.lists(st.sampled_from([*ARM_NAMES[:-1], "p1", "p2"]), max_size=5, unique=True))
    parameters: dict[str, object] = {}
    for name in names:
        spec: dict[str, object] = {"type": draw(st.sampled_from(PARAMETER_TYPES))}
        if draw(st.booleans()):
            spec["defaultValue"] = draw(st.one_of(hostile_values, arm_expression_strings))
        if draw(st.integers(0, 3)) == 0:
            spec["allowedValues"] = draw(st.lists(json_values, max_size=3))
        if draw(st.integers(0, 3)) == 0:
            spec[draw(st.sampled_from(["minValue", "maxValue", "minLength", "maxLength"]))] = draw(big_numbers)
        parameters[name] = spec
    variables = {
        "t": "Microsoft.VirtualMachineImages/imageTemplates",
        **{
            name: draw(st.one_of(arm_expression_strings, hostile_values))
            for name in draw(st.lists(st.sampled_from(ARM_NAMES[:-1]), max_size=4, unique=True))
        },
    }
    for _ in range(draw(st.integers(0, 4))):  # expressions at random places of the resource
        path = draw(st.sampled_from(paths_of(resource)))
        if path:
            parent = get(resource, path[:-1])
            parent[path[-1]] = draw(arm_expression_strings)
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "parameters": parameters,
        "variables": variables,
        "resources": [resource],
    }
    assignments = {
        name: draw(st.one_of(st.text(max_size=10), big_number_text(), st.sampled_from(["[]", "{}", "true", "[1"])))
        for name in draw(st.lists(st.sampled_from([*ARM_NAMES[:-1], "region", "p1"]), max_size=3, unique=True))
    }
    return template, assignments


def to_json_text(value: object) -> str:
    """JSON text of a generated document, on one line: json's indenting encoder takes time quadratic in the
    nesting depth. (Values json.dumps refuses, inf and ints past 4300 digits, are drawn only as text.)"""
    return json.dumps(value)


# ----------------------------------------------------------------------------------------------- raw input
VALID_FILES = [
    *sorted((FIXTURES / "validate" / "valid").glob("*.json")),
    FIXTURES / "validate" / "arm" / "deployment.json",
    FIXTURES / "quickstart" / "hello-linux.json",
]
VALID_BYTES = [p.read_bytes() for p in VALID_FILES]
BYTE_SNIPPETS = [
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\x00",
    b"\xc3",
    b"\xed\xa0\x80",
    b"/*",
    b"//",
    b"\\u",
    b'"',
    b"[",
    b"{",
]


@st.composite
def mutated_bytes(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    """A real file with bytes flipped, inserted, deleted or spliced, or cut short."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "snippet", "cut", "repeat"]))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif op == "snippet":
            data[pos:pos] = draw(st.sampled_from(BYTE_SNIPPETS))
        elif op == "cut":
            del data[pos:]
        elif op == "repeat":
            data[pos:pos] = bytes(data[pos : pos + 30]) * draw(st.integers(1, 200))
    return bytes(data)


raw_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(BYTE_SNIPPETS).map(lambda b: b + b'{"properties": {}}'),
)


# ----------------------------------------------------------------------------------------------- HCL expressions
HCL_FUNCTION_NAMES = [*sorted(hcl_eval.FUNCTIONS), "file", "templatefile", "abs", "nosuch", "aws::thing"]
HCL_REFERENCES = [
    "var.name",
    "var.list",
    "var.map",
    "var.unset",
    "var.secret",
    "var.nope",
    "local.greeting",
    "local.loop",
    "local.nope",
    "path.root",
    "path.cwd",
    "source.name",
    "source.type",
    "build.Password",
    "build.ID",
    "data.amazon-ami.x.id",
    "each.value",
    "self.x",
    "nope",
]
REGEX_PATTERNS = ["(a+)+$", "(\\\\w+)=(\\\\w+)", "[", "(?P<x>a)", "(?<x>a)", "\\\\", ".*", "^$", "a{99999}", "\\\\p{L}"]
FORMAT_SPECS = ["%s", "%d", "%05.2f", "%q", "%v", "%t", "%x", "%X", "%o", "%b", "%e", "%G", "%%", "%*d", "%z", "%-9s"]


def _hcl_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


BINARY_OPERATORS = [*"+-*/%<>", "==", "!=", "&&", "||"]
FORMAT_WIDTHS = ["", "5", "0999999999", ".99999999"]


def hcl_expressions(max_leaves: int = 10) -> st.SearchStrategy[str]:
    """HCL2 expression text generated from the grammar Packer configurations use."""
    literal = st.one_of(
        st.text(max_size=10).map(_hcl_string),
        st.sampled_from(['"${var.name}-x"', '"$${literal}"', '"%{ if true }x%{ endif }"', '"a\\tb"', '"\\u00e9"']),
        big_number_text().filter(lambda s: not s.startswith("-")),
        st.sampled_from(["true", "false", "null", "0.5", "1e3", "0"]),
        st.sampled_from(HCL_REFERENCES),
        st.sampled_from(REGEX_PATTERNS + FORMAT_SPECS).map(_hcl_string),
        st.just("<<EOT\nline ${var.name}\n  two\nEOT\n"),
    )

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        args = st.lists(children, max_size=4)
        return st.one_of(
            st.builds(lambda n, a: f"{n}({', '.join(a)})", st.sampled_from(HCL_FUNCTION_NAMES), args),
            st.builds(lambda a: f"concat({', '.join(a)}...)", st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda a: f"[{', '.join(a)}]", args),
            st.builds(
                lambda ks, vs: "{" + ", ".join(f"{k} = {v}" for k, v in zip(ks, vs, strict=False)) + "}",
                st.lists(st.sampled_from(["a", "b", '"c d"', "(var.name)"]), max_size=3),
                args,
            ),
            st.builds(
                lambda a, op, b: f"{a} {op} {b}", children, st.sampled_from([*list("+-*/%<>"), "==", "&&"]), children
            ),
            st.builds(lambda op, a: f"{op}{a}", st.sampled_from(["-", "!"]), children),
            st.builds(lambda c, a, b: f"{c} ? {a} : {b}", children, children, children),
            st.builds(lambda c, v: f"[for k, v in {c} : {v}]", children, children),
            st.builds(lambda c, v: f"{{for k, v in {c} : k => {v}...}}", children, children),
            st.builds(lambda c, k: f"{c}[{k}]", children, children),
            st.builds(lambda c: f"{c}[*].id", children),
            st.builds(lambda c: f"({c})", children),
            st.builds(lambda c: f'"x${{{c}}}y"', children),
            st.builds(
                lambda text, pattern, rep: f"regex_replace({text}, {_hcl_string(pattern)}, {rep})",
                st.sampled_from(['"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"', '"key=value"', "var.name"]),
                st.sampled_from(REGEX_PATTERNS),
                children,
            ),
            st.builds(
                lambda spec, a: f"format({_hcl_string(spec)}, {', '.join(a)})",
                st.builds(
                    lambda f, w: f.replace("%", f"%{w}", 1),
                    st.sampled_from(FORMAT_SPECS),
                    st.sampled_from(["", "5", "0999999999", ".99999999"]),
                ),
                args,
            ),
        )

    return st.recursive(literal, extend, max_leaves=max_leaves)


HCL_EXPRESSIONS = hcl_expressions()
SMALL_HCL_EXPRESSIONS = hcl_expressions(4)


# ----------------------------------------------------------------------------------------------- Packer configs
PROVISIONER_TYPES = ["shell", "powershell", "file", "windows-restart", "windows-update", "shell-local", "breakpoint",
                     "ansible", "Shell", ""]  # fmt: skip
PROVISIONER_ATTRS = ["inline", "script", "scripts", "environment_vars", "execute_command", "valid_exit_codes",
                     "elevated_user", "elevated_password", "source", "sources", "destination", "direction",
                     "restart_timeout", "restart_command", "restart_check_command", "only", "except", "pause_before",
                     "max_retries", "timeout", "search_criteria", "filters", "update_limit", "name", "inline_shebang",
                     "expect_disconnect", "skip_clean", "generated", "content"]  # fmt: skip
SOURCE_ATTRS = ["os_type", "image_publisher", "image_offer", "image_sku", "image_version", "image_url",
                "custom_managed_image_name", "custom_managed_image_resource_group_name", "location",
                "build_resource_group_name", "managed_image_name", "managed_image_resource_group_name", "vm_size",
                "os_disk_size_gb", "azure_tags", "shared_image_gallery", "shared_image_gallery_destination",
                "plan_info", "user_assigned_managed_identities", "virtual_network_name", "communicator",
                "winrm_username", "ssh_username", "subscription_id", "secure_boot_enabled"]  # fmt: skip
HOSTILE_PATHS = ["/dev/zero", "/dev/null", "/proc/self/status", "/", ".", "..", "/nonexistent/x", "scripts/a.sh",
                 "${path.root}/files", "C:\\\\x.ps1", "file:///etc/hostname"]  # fmt: skip
VARIABLE_TYPES = ["string", "number", "bool", "list(string)", "map(string)", "list(number)", "object({a=string})",
                  "any", "set(string)", "tuple([string])", "list(list(number))", "nosuchtype"]  # fmt: skip


hcl_values = st.one_of(
    HCL_EXPRESSIONS,
    st.sampled_from(HOSTILE_PATHS).map(_hcl_string),
    st.lists(st.one_of(st.sampled_from(HOSTILE_PATHS).map(_hcl_string), SMALL_HCL_EXPRESSIONS), max_size=3).map(
        lambda items: "[" + ", ".join(items) + "]"
    ),
    st.sampled_from(['"Linux"', '"Windows"', '"linux"', '["echo hi", "exit 3"]', '"5m"', "[0, 3010]"]),
)


PLAUSIBLE_TEXT = ['"Linux"', '"${var.name}-x"', "var.name", '"/tmp/x"', '"scripts/a.sh"', '"5m"', '"SYSTEM"',
                  '"sudo sh -c \'{{ .Vars }} {{ .Path }}\'"', "local.greeting", '"files/motd.txt"', '"files/"',
                  '"Canonical"', '"westeurope"', "var.unset", '"${path.root}/scripts/setup.sh"']  # fmt: skip
PLAUSIBLE_LIST = ['["echo hi", "exit 3"]', "[0, 3010]", '["scripts/a.sh", "scripts/setup.sh"]', "var.list",
                  '["A=1", "B=${var.name}"]', '["include:$true"]', '["source.azure-arm.img"]', "[]"]  # fmt: skip
PLAUSIBLE_MAP = ["{ env = var.name }", "var.map", '{ name = "p", product = "q", publisher = "r" }', "{}"]
LIST_SETTINGS = {"inline", "scripts", "sources", "environment_vars", "valid_exit_codes", "filters", "only", "except",
                 "user_assigned_managed_identities"}  # fmt: skip
MAP_SETTINGS = {"azure_tags", "plan_info", "shared_image_gallery", "shared_image_gallery_destination"}


def setting_values(key: str) -> st.SearchStrategy[str]:
    """Mostly a plausible value for the setting, sometimes anything: so that most configurations get past
    evaluation into the translation, and some do not."""
    pool = PLAUSIBLE_LIST if key in LIST_SETTINGS else PLAUSIBLE_MAP if key in MAP_SETTINGS else PLAUSIBLE_TEXT
    return st.one_of(*[st.sampled_from(pool)] * 15, hcl_values)


DECLARED_VARIABLES = """\
variable "name" {
  type    = string
  default = "img"
}
variable "list" {
  type    = list(string)
  default = ["a", "b"]
}
variable "map" {
  default = { a = 1, id = "x" }
}
variable "secret" {
  default   = "s3cret-value"
  sensitive = true
}
variable "unset" {
  type = string
}
"""


@st.composite
def packer_hcl_configs(draw: st.DrawFn) -> str:
    """A .pkr.hcl text: variables (typed, with defaults, one without a value, one sensitive), locals (one that
    refers to itself), azure-arm and other sources, and builds whose settings and provisioners hold generated
    expressions and hostile paths."""
    blocks: list[str] = [DECLARED_VARIABLES]
    if draw(st.integers(0, 3)) == 0:  # a variable whose declared type and default may disagree
        blocks.append(
            f'variable "extra" {{\n  type = {draw(st.sampled_from(VARIABLE_TYPES))}\n  default = {draw(hcl_values)}\n}}'
        )
    locals_ = {"greeting": draw(setting_values("greeting")), "loop": "local.loop"}
    blocks.append("locals {\n" + "".join(f"  {k} = {v}\n" for k, v in locals_.items()) + "}")
    sources = draw(st.lists(st.sampled_from(["img", "win", "x y"]), min_size=1, max_size=2, unique=True))
    for source in sources:
        keys = draw(st.lists(st.sampled_from(SOURCE_ATTRS), max_size=8, unique=True))
        attrs = {a: draw(setting_values(a)) for a in keys}
        attrs.setdefault("os_type", draw(st.sampled_from(['"Linux"', '"Windows"'])))
        source_type = draw(st.sampled_from(["azure-arm", "azure-arm", "azure-arm", "null", "amazon-ebs"]))
        body = "".join(f"  {k} = {v}\n" for k, v in attrs.items())
        blocks.append(f'source "{source_type}" "{source}" {{\n{body}}}')
        sources[sources.index(source)] = f"source.{source_type}.{source}"
    provisioners = []
    for _ in range(draw(st.integers(0, 5))):
        ptype = draw(st.sampled_from(PROVISIONER_TYPES))
        keys = draw(st.lists(st.sampled_from(PROVISIONER_ATTRS), max_size=5, unique=True))
        attrs = {a: draw(setting_values(a)) for a in keys}
        body = "".join(f"    {k} = {v}\n" for k, v in attrs.items())
        provisioners.append(f'  provisioner "{ptype}" {{\n{body}  }}\n')
    if draw(st.integers(0, 3)) == 0:
        provisioners.append(
            '  dynamic "provisioner" {\n    for_each = ' + draw(setting_values("inline")) + '\n    labels = ["shell"]\n'
            "    content {\n      inline = [provisioner.value]\n    }\n  }\n"
        )
    sources_attr = "[" + ", ".join(_hcl_string(s) for s in sources) + "]"
    name = draw(setting_values("name"))
    blocks.append(f"build {{\n  name = {name}\n  sources = {sources_attr}\n" + "".join(provisioners) + "}")
    return "\n\n".join(blocks) + "\n"


def _real_packer_texts() -> list[str]:
    root = FIXTURES / "translate"
    return [
        p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.pkr.hcl")) + sorted(root.rglob("*.pkrvars.hcl"))
    ]


REAL_HCL = _real_packer_texts()
HCL_SNIPPETS = ["{", "}", "[", "]", '"', "${", "%{", "<<EOT\n", "\n", "=", "...", "#", "/*", "\\", "var.", "(", ","]


@st.composite
def mutated_hcl(draw: st.DrawFn) -> str:
    """A real .pkr.hcl file with lines deleted, duplicated or swapped and syntax inserted."""
    lines = draw(st.sampled_from(REAL_HCL)).splitlines(keepends=True)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "replace-value"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + draw(st.sampled_from(HCL_SNIPPETS)) + lines[i][pos:]
        elif op == "replace-value" and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {draw(hcl_values)}\n"
    return "".join(lines)


LEGACY_FILES = sorted((FIXTURES / "translate" / "packer" / "legacy").glob("*.json"))
LEGACY_TEMPLATES = [json.loads(p.read_text(encoding="utf-8")) for p in LEGACY_FILES]
GO_TEMPLATES = [
    "{{user `subscription_id`}}",
    "{{user `nope`}}",
    '{{user "ssh_user"}}',
    "{{env `HOME`}}",
    "{{timestamp}}",
    "{{template_dir}}",
    "{{build `Password`}}",
    "{{ .Path }}",
    "{{ .Vars }}",
    "{{ .WinRMPassword }}",
    "{{isotime `2006`}}",
    "{{split `a:b` `:` 0}}",
    "{{",
    "}}",
    "{{user `a`}}{{user `b`",
    "{{ user `x` | upper }}",
    "{{-user `ssh_user`-}}",
]


@st.composite
def packer_json_configs(draw: st.DrawFn) -> object:
    """A legacy JSON template from the fixtures, damaged, with Go template actions in its strings."""
    template_values = st.one_of(
        hostile_values,
        st.sampled_from(GO_TEMPLATES),
        st.lists(st.sampled_from(GO_TEMPLATES + HOSTILE_PATHS), min_size=1, max_size=3).map("".join),
        st.sampled_from(HOSTILE_PATHS),
    )
    doc = copy.deepcopy(draw(st.sampled_from(LEGACY_TEMPLATES)))
    return _mutate(draw, doc, template_values, draw(st.integers(min_value=1, max_value=6)))


def write_file(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(data)
    return path
