"""docs/reliability.md stays true: every fault of issue 7's list has a row, every row cites at least one test and
states an exit status aibx has, every cited test exists (read with ``ast``, parametrized ids included), and the
exit status table is ``aibx.exitcodes.ExitCode``."""

from __future__ import annotations

import ast
import itertools
import re
from functools import cache
from pathlib import Path

import pytest

from aibx.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
# issue 7, section 2 ("Fault matrix"), one entry per fault
SCENARIOS = (
    "connection refused",
    "dropped mid-step",
    "reboot expected",
    "reboot unexpected",
    "host never returns",
    "host key changed",
    "auth failure",
    "checksum mismatch",
    "download failing then succeeding",
    "disk full on upload",
    "sudo asking for a password",
    "remote shell missing",
    "build timeout",
    "SIGINT",
    "SIGTERM",
    "malformed template",
    "malformed HCL",
    "malformed parameters file",
)
TRANSPORTS = {"ssh", "local", "winrm", "all", "—"}
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)(?:\[([^\]`]+)\])?`")
EXIT = re.compile(r"\bexit (\d+)\b")


def table(marker: str) -> list[list[str]]:
    """The rows (cells stripped) of the Markdown table that follows ``<!-- marker -->``."""
    lines = DOC.read_text().splitlines()
    start = lines.index(f"<!-- {marker} -->") + 1
    rows = []
    for line in itertools.takewhile(lambda text: text.startswith("|"), lines[start:]):
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(rows) > 2, f"no table after <!-- {marker} -->"
    assert set(rows[1]) <= {"---"}, "the second line must be the header's separator"
    return rows[2:]


def matrix() -> list[list[str]]:
    rows = table("fault-matrix")
    for row in rows:
        assert len(row) == 4, f"a row needs scenario | transport | what aibx does | proved by: {row}"
    return rows


# ----------------------------------------------------------------------------------------------- reading tests
@cache
def definitions_in(path: str) -> dict[str, ast.FunctionDef]:
    """``name`` or ``Class::name`` -> the test function's definition, for a test file under the repository."""
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    found: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                    found[f"{node.name}::{item.name}"] = item
    return found


def _is_parametrize(decorator: ast.expr) -> bool:
    return (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and decorator.func.attr == "parametrize"
    )


def _id_of(value: object, argname: str, index: int) -> str:
    """pytest's id for one literal argument value."""
    if isinstance(value, str):
        return value.encode("unicode_escape").decode("ascii")
    if value is None or isinstance(value, (bool, int, float)):
        return str(value)
    return f"{argname}{index}"


def _ids_of(call: ast.Call) -> list[str] | None:
    """The ids one ``@pytest.mark.parametrize`` gives, or None when they cannot be read from the source."""
    explicit = next((k.value for k in call.keywords if k.arg == "ids"), None)
    if explicit is not None:
        try:
            return [str(i) for i in ast.literal_eval(explicit)]
        except ValueError:
            return None
    if len(call.args) < 2 or not isinstance(call.args[1], (ast.List, ast.Tuple)):
        return None
    try:
        names = ast.literal_eval(call.args[0])
    except ValueError:
        return None
    argnames = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    ids = []
    for index, element in enumerate(call.args[1].elts):
        if isinstance(element, ast.Call) and getattr(element.func, "attr", "") == "param":
            given = next((k.value for k in element.keywords if k.arg == "id"), None)
            if given is None:
                return None
            ids.append(str(ast.literal_eval(given)))
            continue
        try:
            value = ast.literal_eval(element)
        except ValueError:
            return None
        values = value if len(argnames) > 1 else (value,)
        ids.append("-".join(_id_of(v, n, index) for v, n in zip(values, argnames, strict=True)))
    return ids


def parameter_ids(function: ast.FunctionDef) -> set[str] | None:
    """Every ``[id]`` of a parametrized test (stacked decorators: the innermost first, as pytest joins them); an
    empty set when it is not parametrized, None when its ids cannot be read from the source."""
    layers = []
    for decorator in reversed(function.decorator_list):
        if _is_parametrize(decorator):
            ids = _ids_of(decorator)  # type: ignore[arg-type]
            if ids is None:
                return None
            layers.append(ids)
    if not layers:
        return set()
    return {"-".join(combination) for combination in itertools.product(*layers)}


def missing(path: str, name: str, param: str | None) -> str | None:
    """Why the node id does not name a test, or None when it does (``param`` "" or None: not parametrized)."""
    if not (ROOT / path).is_file():
        return f"{path} does not exist"
    function = definitions_in(path).get(name)
    if function is None:
        return f"{path} has no test {name}"
    if not param:
        return None
    ids = parameter_ids(function)
    if ids is None:
        return f"{path}::{name}: its parameter ids cannot be read from the source; cite the test without [{param}]"
    if param not in ids:
        return f"{path}::{name} has no parameter id [{param}] (it has: {', '.join(sorted(ids)) or 'none'})"
    return None


# ----------------------------------------------------------------------------------------------- the doc
def test_every_fault_of_the_issue_has_a_row() -> None:
    covered = {row[0] for row in matrix()}
    assert [s for s in SCENARIOS if s not in covered] == []


def test_every_row_names_its_transports() -> None:
    for scenario, transports, _, _ in matrix():
        named = {t.strip() for t in transports.split(",")}
        assert named and named <= TRANSPORTS, f"{scenario}: transport {transports!r} (known: {sorted(TRANSPORTS)})"


def test_every_row_cites_a_test_and_every_cited_test_exists() -> None:
    problems = []
    for scenario, transports, _, proof in matrix():
        cited = NODE_ID.findall(proof)
        if not cited:
            problems.append(f"{scenario} ({transports}): no test cited")
        # everything in the column must be a node id: nothing half-written slips through
        leftover = NODE_ID.sub("", proof).replace(",", "").strip()
        if leftover:
            problems.append(f"{scenario} ({transports}): not a node id: {leftover!r}")
        problems += [why for why in (missing(*node) for node in cited) if why]
    assert problems == []


def test_every_node_id_in_the_doc_exists() -> None:
    problems = [why for why in (missing(*node) for node in NODE_ID.findall(DOC.read_text())) if why]
    assert problems == []


def test_every_row_states_an_exit_status_aibx_has() -> None:
    known = {int(code) for code in ExitCode}
    for scenario, transports, behaviour, _ in matrix():
        stated = {int(n) for n in EXIT.findall(behaviour)}
        assert stated, f"{scenario} ({transports}): say the exit status ('exit N')"
        assert stated <= known, f"{scenario} ({transports}): exit {stated - known} is not in aibx/exitcodes.py"


def test_the_exit_status_table_is_aibx_exitcodes() -> None:
    rows = table("exit-codes")
    assert [(int(code), name.strip("`")) for code, name, _ in rows] == [(int(c), c.name) for c in ExitCode]


def test_the_readme_links_the_doc() -> None:
    assert "(docs/reliability.md)" in (ROOT / "README.md").read_text()


# ----------------------------------------------------------------------------------------------- the checker itself
@pytest.mark.parametrize(
    ("source", "ids"),
    [
        ("def test_a(): pass", set()),
        ('@pytest.mark.parametrize("x", ["a", "b"])\ndef test_a(x): pass', {"a", "b"}),
        ('@pytest.mark.parametrize("x", [1, None], ids=["one", "none"])\ndef test_a(x): pass', {"one", "none"}),
        ('@pytest.mark.parametrize(("x", "y"), [("a", 1), ("b", True)])\ndef test_a(x, y): pass', {"a-1", "b-True"}),
        (
            '@pytest.mark.parametrize("x", [1, 2])\n@pytest.mark.parametrize("y", ["p", "q"])\ndef test_a(x, y): pass',
            {"p-1", "p-2", "q-1", "q-2"},
        ),
        ('@pytest.mark.parametrize("x", [pytest.param(1, id="first")])\ndef test_a(x): pass', {"first"}),
        ('@pytest.mark.parametrize("x", CASES)\ndef test_a(x): pass', None),
    ],
)
def test_parameter_ids_are_read_as_pytest_makes_them(source: str, ids: set[str] | None) -> None:
    function = ast.parse(source).body[0]
    assert isinstance(function, ast.FunctionDef)
    assert parameter_ids(function) == ids


def test_a_wrong_node_id_is_caught() -> None:
    assert (
        missing("tests/test_faults.py", "test_no_such_test", None)
        == "tests/test_faults.py has no test test_no_such_test"
    )
    assert "has no parameter id [SIGHUP]" in (
        missing(
            "tests/test_run_ssh.py", "test_sigint_or_sigterm_stops_the_remote_process_and_removes_temp_files", "SIGHUP"
        )
        or ""
    )
    assert missing("tests/nope.py", "test_x", None) == "tests/nope.py does not exist"
