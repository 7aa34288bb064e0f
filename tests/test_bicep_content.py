"""Bicep's loadJsonContent / loadYamlContent (with a JSONPath), the spread operator ``...``, and .bicepparam files
whose template deploys no image template (fixtures/bicep/content, written for the project)."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from aibx import validation
from aibx.bicep import content, syntax
from aibx.document import Unresolved
from aibx.loader import LoadOptions, load
from tests.conftest import FIXTURES

CONTENT = FIXTURES / "bicep" / "content"


def without_the_bad_spread(tmp_path: Path) -> Path:
    """The fixture minus its one deliberate error (a spread of an array into an object), beside its data files."""
    for name in ("build.json", "steps.yaml"):
        shutil.copy(CONTENT / name, tmp_path / name)
    text = (CONTENT / "load-content.bicep").read_text()
    start = text.index("        artifactTags")
    end = text.index("        }\n", start) + len("        }\n")
    path = tmp_path / "load-content.bicep"
    path.write_text(text[:start] + text[end:])
    return path


def test_json_and_yaml_content_with_paths_and_spreads_make_the_template(tmp_path: Path) -> None:
    result = load(str(without_the_bad_spread(tmp_path)))
    assert result.diagnostics == []
    (doc,) = result.documents
    resource = doc.resource
    assert resource["location"] == "westeurope"  # loadJsonContent('build.json', 'regions[0]')
    assert resource["tags"] == {"owner": "images-team", "env": "prod"}  # a YAML alias; the later env wins
    props = resource["properties"]
    assert props["vmProfile"] == {"vmSize": "Standard_D2s_v5"}
    assert props["source"] == {
        "type": "PlatformImage",
        "publisher": "Canonical",
        "offer": "ubuntu-24_04-lts",
        "sku": "server",
        "version": "latest",
    }
    assert [c["name"] for c in props["customize"]] == ["update", "tools", "last"]
    assert props["customize"][1]["inline"] == ["sudo apt-get install -y git jq"]
    assert validation.validate(doc).diagnostics == []


def test_positions_reach_through_a_spread(tmp_path: Path) -> None:
    path = without_the_bad_spread(tmp_path)
    path.write_text(path.read_text().replace("name: 'last'", "name: 'last'\n        bogus: 1"))
    (doc,) = load(str(path)).documents
    (diag,) = [d for d in validation.validate(doc).diagnostics if "bogus" in d.message or "bogus" in d.json_path]
    assert diag.line == 39 and diag.json_path.startswith("properties.customize[2]")
    steps = tmp_path / "steps.yaml"
    steps.write_text(steps.read_text().replace("type: Shell\n    name: tools", "type: Shel\n    name: tools"))
    (doc,) = load(str(path)).documents
    (wrong,) = [d for d in validation.validate(doc).diagnostics if d.code == "AIB057"]
    assert wrong.json_path == "properties.customize[1].type" and wrong.line == 35  # the line of ...yamlSteps


def test_a_spread_of_the_wrong_kind_is_an_error_at_its_line() -> None:
    result = load(str(CONTENT / "load-content.bicep"))
    (diag,) = result.diagnostics
    assert (diag.code, diag.line, diag.json_path) == ("AIB006", 49, "properties.distribute[0].artifactTags")
    assert "spread operator ... in an object takes an object, not an array" in diag.message


def test_the_spread_rewrite_keeps_every_position_and_skips_strings_and_comments() -> None:
    text = "var a = {\n  ...b\n  c: '...'\n}\n// ...\nvar d = [\n  ...e\n  '${f}...'\n]\n"
    rewritten, spreads = syntax._spreads_rewritten(text)
    assert len(rewritten) == len(text)
    assert rewritten.count("...") == 3  # in the string, the comment and the interpolated string
    assert spreads == {text.index("...b"), text.index("e\n")}
    program = syntax.parse(text)
    assert program.problems == []
    a, d = (decl.value for decl in program.declarations)
    assert isinstance(a, syntax.Obj) and a.props[0].spread and not a.props[1].spread
    assert isinstance(d, syntax.Arr) and d.spreads == {0}


def test_content_paths_and_yaml_values() -> None:
    value = {"a": {"b": [10, {"c": "x"}]}, "odd key": 1}
    assert content.select(value, "$.a.b[1].c") == "x"
    assert content.select(value, "a.b[-2]") == 10
    assert content.select(value, "$['odd key']") == 1
    assert content.select(value, "$") is value
    with pytest.raises(content.UnsupportedPath):
        content.select(value, "$..c")
    with pytest.raises(content.UnsupportedPath):
        content.select(value, "$.a.b[*]")
    with pytest.raises(content.ContentError, match="no property 'z'"):
        content.select(value, "$.a.z")
    assert content.parse("yaml", "when: 2024-01-02\n1: one\nraw: !!binary aGk=\n") == {
        "when": "2024-01-02",
        "1": "one",
        "raw": "aGk=",
    }
    with pytest.raises(content.ContentError, match="not YAML at line 2"):
        content.parse("yaml", "a: [1\nb: 2\n")
    with pytest.raises(content.ContentError, match="not YAML"):
        content.parse("yaml", "!!python/object:os.system {}\n")  # the safe loader builds no Python objects
    names = "abcdefghi"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{new}: &{new} [{', '.join([f'*{old}'] * 10)}]\n" for old, new in itertools.pairwise(names)
    )
    with pytest.raises(content.ContentError, match="items"):  # aliases share a node; every use is counted
        content.parse("yaml", bomb)


def test_an_unsupported_path_is_unknown_and_local_file_rules_hold(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("regions: [westeurope]\n")
    (tmp_path / "sub").mkdir()
    text = (CONTENT / "load-content.bicep").read_text()
    path = tmp_path / "sub" / "t.bicep"
    path.write_text(
        text.replace("loadJsonContent('build.json', 'regions[0]')", "loadYamlContent('../data.yaml', '$.regions[0]')")
    )
    for name in ("build.json", "steps.yaml"):
        shutil.copy(CONTENT / name, tmp_path / "sub" / name)
    (refused,) = load(str(path)).documents
    location = refused.resource["location"]
    assert isinstance(location, Unresolved) and "--allow-local-files" in location.reason
    (doc,) = load(str(path), LoadOptions(allow_local_files=True)).documents
    assert doc.resource["location"] == "westeurope"
    path.write_text(text.replace("'regions[0]'", "'$.regions[?(@ == 1)]'"))
    for name in ("build.json", "steps.yaml"):
        shutil.copy(CONTENT / name, tmp_path / name)
    (doc,) = load(str(path)).documents
    assert isinstance(doc.resource["location"], Unresolved)


def test_a_bicepparam_for_a_template_without_an_image_template_is_unrelated(tmp_path: Path) -> None:
    (tmp_path / "network.bicep").write_text(
        "param name string\nresource v 'Microsoft.Network/virtualNetworks@2023-04-01' = {\n  name: name\n}\n"
    )
    (tmp_path / "network.bicepparam").write_text("using 'network.bicep'\nparam name = 'vnet'\n")
    result = load(str(tmp_path / "network.bicepparam"))
    assert result.unrelated and [d.code for d in result.diagnostics] == ["AIB003"]
