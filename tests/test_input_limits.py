"""Big and exploding input (issue 11, items 5 and 6): a value that doubles forty times, nesting hundreds deep, a
megabyte on one line. Each either translates correctly or is exit 2 with a diagnostic naming the file, the line and
what to do; never MemoryError, RecursionError or exit 70. Nothing here is timed: the benchmark
(``bench/translate_bench.py --big``) measures speed; these tests check results, and that the quadratic tokenizer
is gone from the path."""

from __future__ import annotations

import base64
import json
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
