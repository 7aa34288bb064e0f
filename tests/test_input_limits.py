"""Big and exploding input (issue 11, items 5 and 6): a value that doubles forty times, nesting hundreds deep, a
megabyte on one line. Each either translates correctly or is exit 2 with a diagnostic naming the file, the line and
what to do; never MemoryError, RecursionError or exit 70. Nothing here is timed: the benchmark
(``bench/translate_bench.py --big``) measures speed; these tests check results, and that the quadratic tokenizer
is gone from the path."""

from __future__ import annotations

import base64
import json
import re
import shlex
from pathlib import Path

import pytest

from aibx.translators import idioms
from tests.support.cli import invoke

LINUX_SOURCE = """source "azure-arm" "x" {
  os_type = "Linux"
  location = "westus"
  image_publisher = "Canonical"
  image_offer = "ubuntu-24_04-lts"
  image_sku = "server"
  managed_image_name = "x"
  managed_image_resource_group_name = "rg"
}
"""


def build(*provisioners: str) -> str:
    return LINUX_SOURCE + 'build {\n  sources = ["source.azure-arm.x"]\n' + "".join(provisioners) + "}\n"


def inline(*lines: str) -> str:
    return '  provisioner "shell" {\n    inline = [' + ", ".join(lines) + "]\n  }\n"


# ----------------------------------------------------------------------------------------------- item 6: one big line
def _no_shlex(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("shlex tokenizes character by character, quadratic in a line's length")


def test_the_download_idiom_is_read_without_shlex(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = base64.b64encode(bytes(range(256)) * 4096).decode()  # 1.3 MB on one line
    monkeypatch.setattr(shlex, "split", _no_shlex)
    monkeypatch.setattr(shlex, "shlex", _no_shlex)
    assert idioms._linux_download_params([f"echo {blob} | base64 -d > /tmp/x"]) is None
    assert idioms._linux_download_params([f"curl -fsSL --retry 5 -o /tmp/x '{blob}"]) is None  # unterminated
    uri = f"https://example.org/{blob[:200_000]}?sig=a'b"
    for sha in ("ab" * 32, None):
        lines = idioms.linux_run_script(uri, sha)
        assert idioms.recognise_script_download(lines, idioms.model.OsType.LINUX) == idioms.Download(uri, sha)
        fetch = idioms.linux_fetch_file(uri, "/tmp/it's here", sha)
        found = idioms.recognise_file_download(fetch, idioms.model.OsType.LINUX)
        assert found == idioms.Download(uri, sha, "/tmp/it's here")


@pytest.mark.parametrize(
    "words",
    [["curl", "-fsSL", "a b", "it's", "", "x'\"y", "ü", "$HOME", "a\\b"], ["--", "'", "''", '"\'"']],
)
def test_the_word_reader_agrees_with_shlex_on_what_sh_quote_writes(words: list[str]) -> None:
    line = " ".join(shlex.quote(w) for w in words) + " | rest"
    assert idioms._quoted_words(line, len(words)) == words == shlex.split(line)[: len(words)]


def test_a_megabyte_inline_line_translates_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = base64.b64encode(bytes(range(256)) * 4096).decode()
    line = f"echo {blob} | base64 -d > /tmp/blob"
    (tmp_path / "big.pkr.hcl").write_text(build(inline(json.dumps(line))))
    monkeypatch.chdir(tmp_path)
    result = invoke("translate", "big.pkr.hcl", "--to", "aib")
    assert result.code == 0, result.err
    (step,) = json.loads(result.out)["properties"]["customize"]
    assert step["inline"] == [line]


# --------------------------------------------------------------------------------------------- item 5: exploding input
def bounded(*args: str):
    """``aibx ARGS`` in this process under the fuzz harness's guards: a memory bomb is a failed assertion (not the
    machine's memory), a hang is ExampleHung. Neither is a timing: both are orders of magnitude away."""
    from tests.support.fuzzing import memory_limit, watchdog

    with watchdog(), memory_limit():
        return invoke(*args)


def assert_refused(result, file: str, code: str, words: str) -> None:
    assert result.code == 2, result.text
    assert "internal error" not in result.text and "Error" not in result.text.replace("error[", "")
    line = next(x for x in result.text.splitlines() if f"[{code}" in x)
    assert line.startswith(f"{file}:") and words in line, line
    assert "simplify the configuration" in line or "ARM refuses" in line  # what to do


def arm_doubling(folder: Path, count: int, function: str, first: object) -> Path:
    variables: dict[str, object] = {"v0": first}
    for i in range(1, count + 1):
        variables[f"v{i}"] = f"[{function}(variables('v{i - 1}'), variables('v{i - 1}'))]"
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "variables": variables,
        "resources": [
            {
                "type": "Microsoft.VirtualMachineImages/imageTemplates",
                "apiVersion": "2022-07-01",
                "name": "boom",
                "location": "westus",
                "identity": {"type": "UserAssigned", "userAssignedIdentities": {"<identityId>": {}}},
                "properties": {
                    "distribute": [],
                    "source": {"type": "PlatformImage", "publisher": "a", "offer": "b", "sku": "c", "version": "1"},
                    "customize": [{"type": "Shell", "name": "boom", "inline": [f"[string(variables('v{count}'))]"]}],
                },
            }
        ],
    }
    path = folder / "boom.json"
    path.write_text(json.dumps(template, indent=2))
    return path


@pytest.mark.parametrize(
    ("function", "first", "words"),
    [("concat", "ab", "characters"), ("concat", ["ab"], "items"), ("createArray", "ab", "items")],
)
@pytest.mark.parametrize("verb", ["validate", "plan", "translate"])
def test_arm_variables_that_double_forty_times_are_exit_2(
    tmp_path: Path, verb: str, function: str, first: object, words: str
) -> None:
    path = arm_doubling(tmp_path, 40, function, first)
    extra = ["--to", "packer"] if verb == "translate" else []
    result = bounded(verb, str(path), *extra)
    assert_refused(result, str(path), "AIB006", "a value of more than")
    assert words in result.text


def hcl_config(folder: Path, locals_block: str, inline_expr: str) -> Path:
    path = folder / "boom.pkr.hcl"
    path.write_text(
        "locals {\n" + locals_block + "}\n" + build(f'  provisioner "shell" {{\n    inline = {inline_expr}\n  }}\n')
    )
    return path


@pytest.mark.parametrize(
    ("locals_block", "inline_expr", "words"),
    [
        (
            '  l0 = "ab"\n' + "".join(f'  l{i} = "${{local.l{i - 1}}}${{local.l{i - 1}}}"\n' for i in range(1, 41)),
            "[local.l40]",
            "characters",
        ),
        (
            '  l0 = ["ab"]\n' + "".join(f"  l{i} = concat(local.l{i - 1}, local.l{i - 1})\n" for i in range(1, 41)),
            "local.l40",
            "items",
        ),
        (
            '  l0 = ["ab"]\n' + "".join(f"  l{i} = [local.l{i - 1}, local.l{i - 1}]\n" for i in range(1, 41)),
            '[join(",", local.l40)]',
            "items",
        ),
        (
            '  l0 = "ab"\n' + "".join(f'  l{i} = replace(local.l{i - 1}, "a", local.l{i - 1})\n' for i in range(1, 41)),
            "[local.l40]",
            "characters",
        ),
        ("  x = " + "(" * 500 + '"a"' + ")" * 500 + "\n", "[local.x]", "nested more than"),
        ("  x = " + "[" * 500 + '"a"' + "]" * 500 + "\n", "local.x", "nested more than"),
        (
            '  l0 = "a"\n' + "".join(f'  l{i} = "${{local.l{i - 1}}}"\n' for i in range(1, 500)),
            "[local.l499]",
            "nested",
        ),
    ],
    ids=["string-doubling", "concat-doubling", "pair-doubling", "replace-squaring", "parens", "brackets", "chain"],
)
def test_hcl_locals_that_explode_are_exit_2(tmp_path: Path, locals_block: str, inline_expr: str, words: str) -> None:
    path = hcl_config(tmp_path, locals_block, inline_expr)
    result = bounded("translate", str(path), "--to", "aib")
    assert_refused(result, str(path), "AIB073", words)
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: ", result.err), "a line and column"


def test_a_hundred_thousand_nested_brackets_are_exit_2(tmp_path: Path) -> None:
    path = hcl_config(tmp_path, "  x = " + "(" * 100_000 + "1" + ")" * 100_000 + "\n", "[local.x]")
    result = bounded("translate", str(path), "--to", "aib")
    assert result.code == 2 and "internal error" not in result.text, result.text
    assert f"{path}:" in result.err and "nested" in result.err


def test_limits_leave_ordinary_big_values_alone(tmp_path: Path) -> None:
    """Under the limits: a 4 MB string built from locals, 50,000 list items, 60 nested brackets."""
    blob = "x" * (1 << 20)
    path = hcl_config(
        tmp_path,
        f'  a = "{blob}"\n  b = "${{local.a}}${{local.a}}"\n  c = "${{local.b}}${{local.b}}"\n'
        f'  d = split(",", join(",", [for i in split("", "{"y" * 50_000}") : i]))\n'
        "  e = " + "[" * 60 + '"deep"' + "]" * 60 + "\n",
        '[local.c, "n=${length(local.d)}", local.e[0][0][0]]'.replace("[0][0][0]", "[0]" * 60),
    )
    result = bounded("translate", str(path), "--to", "aib", "--allow-lossy")
    assert result.code in (0, 1), result.text
    (step,) = json.loads(result.out)["properties"]["customize"]
    assert step["inline"] == ["x" * (4 << 20), "n=50000", "deep"]


def test_legacy_json_user_variables_that_double_forty_times_are_exit_2(tmp_path: Path) -> None:
    variables = {"v0": "ab", **{f"v{i}": f"{{{{user `v{i - 1}`}}}}{{{{user `v{i - 1}`}}}}" for i in range(1, 41)}}
    template = {
        "variables": variables,
        "builders": [{"type": "azure-arm", "os_type": "Linux", "location": "westus", "image_publisher": "a",
                      "image_offer": "b", "image_sku": "c", "managed_image_name": "m",
                      "managed_image_resource_group_name": "rg"}],
        "provisioners": [{"type": "shell", "inline": ["echo {{user `v40`}}"]}],
    }  # fmt: skip
    path = tmp_path / "boom.json"
    path.write_text(json.dumps(template, indent=2))
    result = bounded("translate", str(path), "--to", "aib")
    assert_refused(result, str(path), "AIB07", "characters")
