"""``--format json`` on every verb: standard output is exactly one JSON document whatever the exit code, with the
fields docs/guide-ci.md documents ("JSON output"); human output stays on standard error. Runs use --host local,
a real sshd on loopback, and a fleet of two."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aibx import __version__
from tests.support.cli import Completed, invoke
from tests.support.templates import shell, write_template
from tests.translate_cases import TRANSLATE

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "fixtures" / "quickstart" / "hello-linux.json"


def documented_tables() -> dict[str, list[set[str]]]:
    """The fields of each table of docs/guide-ci.md's "JSON output", by the heading above it ("" for the fields
    every document has)."""
    text = (ROOT / "docs" / "guide-ci.md").read_text(encoding="utf-8").split("## JSON output", 1)[1]
    out: dict[str, list[set[str]]] = {}
    for chunk in re.split(r"^#### ", text, flags=re.MULTILINE):
        heading = chunk.splitlines()[0] if chunk.startswith("aibx") or chunk.startswith("When") else ""
        tables = out.setdefault(heading, [])
        for table in re.findall(r"^\| field \|.*\n\|---.*\n((?:\|.*\n)+)", chunk, re.MULTILINE):
            cells = [row.split("|")[1] for row in table.splitlines()]
            tables.append({name.strip(" `") for cell in cells for name in cell.split(",")})
    return out


DOCUMENTED = documented_tables()
COMMON = DOCUMENTED[""][0]


def test_the_documented_schema_is_the_one_written() -> None:
    assert {"aibx", "formatVersion", "exitCode"} == COMMON
    assert set(DOCUMENTED) >= {"aibx validate", "aibx plan (and aibx run --dry-run)", "aibx translate", "aibx run"}


def document(done: Completed) -> dict:
    """The one document on standard output, with the fields every document has."""
    data = json.loads(done.out)  # the whole of standard output, nothing before or after
    assert isinstance(data, dict)
    assert data["aibx"] == __version__ and data["formatVersion"] == 1
    assert data["exitCode"] == done.code
    return data


def assert_diagnostic(d: dict) -> None:
    assert set(d) == {"severity", "code", "message", "file", "line", "column", "path"}
    assert d["severity"] in ("error", "warning") and d["code"].startswith("AIB")
    assert isinstance(d["line"], int) and isinstance(d["column"], int) and isinstance(d["path"], str)


def bad_template(tmp_path: Path) -> Path:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "type": "Microsoft.VirtualMachineImages/imageTemplates",\n  "properties": {}\n}\n')
    return path


def assert_refusal(done: Completed, command: str) -> dict:
    data = document(done)
    assert done.code == 2
    assert set(data) == COMMON | DOCUMENTED["When plan or run stop before their work"][0]
    assert data["command"] == command and data["errors"] and all(isinstance(e, str) for e in data["errors"])
    for d in data["diagnostics"]:
        assert_diagnostic(d)
    assert data["errors"][-1] in done.err  # standard error says it as in text mode
    return data


# ----------------------------------------------------------------------------------------------- validate
def test_validate(tmp_path: Path) -> None:
    done = invoke("validate", QUICKSTART, "--format", "json")
    data = document(done)
    assert set(data) == COMMON | DOCUMENTED["aibx validate"][0]
    assert done.code == 0 and data["valid"] is True and data["files"] == [str(QUICKSTART)]
    [template] = data["templates"]
    assert template["os"] == "Linux" and isinstance(template["errors"], int) and template["apiVersion"]
    assert data["summary"] == {"errors": 0, "warnings": len(data["diagnostics"])}
    done = invoke("validate", bad_template(tmp_path), "--format", "json")
    data = document(done)
    assert done.code == 2 and data["valid"] is False and data["summary"]["errors"] >= 1
    for d in data["diagnostics"]:
        assert_diagnostic(d)


# ----------------------------------------------------------------------------------------------- plan
def test_plan_and_its_refusal(tmp_path: Path) -> None:
    data = document(invoke("plan", QUICKSTART, "--format", "json"))
    assert set(data) == COMMON | DOCUMENTED["aibx plan (and aibx run --dry-run)"][0]
    assert data["os"] == "Linux" and [s["index"] for s in data["steps"]] == [1, 2, 3, 4, 5]
    refusal = assert_refusal(invoke("plan", bad_template(tmp_path), "--format", "json"), "plan")
    assert {d["code"] for d in refusal["diagnostics"]} == {"AIB054"}
    assert all(d["file"] == str(tmp_path / "bad.json") and d["line"] for d in refusal["diagnostics"])


# ----------------------------------------------------------------------------------------------- translate
# a managed image in another region than the build's: Packer cannot (its resource tags are merely not applicable)
LOSSY = TRANSLATE / "fidelity" / "c07-other-region.json"


def test_translate_to_standard_output_puts_the_translation_in_the_document() -> None:
    done = invoke("translate", LOSSY, "--to", "packer", "--format", "json")
    data = document(done)
    assert done.code == 1  # lossy, as in text mode
    assert set(data) == COMMON | DOCUMENTED["aibx translate"][0]
    assert data["to"] == "packer" and data["lossy"] is True
    for d in data["diagnostics"]:  # what validation says about the input (a scriptUri without its checksum)
        assert_diagnostic(d)
    [report] = data["reports"]
    assert report["output"] is None and report["text"].startswith("packer {")
    assert report["source"] == str(LOSSY) and report["counts"]["dropped"] == 1
    [dropped] = [e for e in report["entries"] if e["status"] == "dropped"]
    assert dropped == {
        "status": "dropped",
        "subject": "properties.distribute[0].location",
        "detail": "Packer creates the managed image in the build region; copy it to another region afterwards",
        "code": "AIB071",
        "file": str(LOSSY),
        "line": 11,
        "column": 190,
    }
    [not_applicable] = [e for e in report["entries"] if e["status"] == "not-applicable"]
    assert not_applicable["subject"] == "tags" and "code" not in not_applicable
    assert all(e["code"] == "AIB070" for e in report["entries"] if e["status"] == "approximated")
    assert "dropped      properties.distribute[0].location" in done.err  # the human report, on standard error


def test_translate_to_a_file_names_it_and_report_json_writes_the_same_document(tmp_path: Path) -> None:
    out = tmp_path / "build.pkr.hcl"
    saved = tmp_path / "report.json"
    args = ("translate", LOSSY, "--to", "packer", "-o", out, "--allow-lossy")
    done = invoke(*args, "--format", "json", "--report-json", saved)
    data = document(done)
    assert done.code == 0
    [report] = data["reports"]
    assert report["output"] == str(out) and report["text"] is None
    assert out.read_text().startswith("packer {")
    assert json.loads(saved.read_text()) == data
    # the old spelling: a note, and the same document
    old = invoke(*args, "--report-json", "-")
    assert "--report-json - is deprecated: use --format json" in old.err
    assert document(old) == data


def test_translate_of_unreadable_input_is_a_document_with_diagnostics(tmp_path: Path) -> None:
    done = invoke("translate", tmp_path / "missing.pkr.hcl", "--to", "aib", "--format", "json")
    data = document(done)
    assert done.code == 2 and data["reports"] == []
    [d] = data["diagnostics"]
    assert_diagnostic(d)
    assert d["code"] == "AIB001"


# ----------------------------------------------------------------------------------------------- run
def check_run_report(data: dict, target: str, outcomes: list[str]) -> None:
    assert set(data) == COMMON | DOCUMENTED["aibx run"][0]
    assert data["target"] == target and data["os"] == "Linux"
    assert [s["outcome"] for s in data["steps"]] == outcomes
    for step in data["steps"]:
        assert {"index", "name", "type", "phase", "outcome", "exitCode", "start", "end", "durationSeconds"} <= set(step)
    assert data["totals"]["steps"] == len(outcomes)


def test_run_local_prints_the_report_and_nothing_else_on_standard_output(tmp_path: Path) -> None:
    saved = tmp_path / "report.json"
    done = invoke(
        "run", QUICKSTART, "--host", "local", "--log", tmp_path / "c.log", "--report", saved, "--format", "json"
    )
    data = document(done)
    assert done.code == 0, done.err
    check_run_report(data, "local", ["succeeded"] * 5)
    assert data["outcome"] == "succeeded" and data["reboots"] == [] and isinstance(data["warnings"], list)
    assert json.loads(saved.read_text()) == data  # --report writes the same document
    assert "==> [2/5] write-build-info" in done.err and "check-files | quickstart validation passed" in done.err


def test_run_failure_and_refusals_keep_their_exit_codes(tmp_path: Path) -> None:
    template = write_template(tmp_path, [shell("ok", "true"), shell("breaks", "echo broken >&2", "exit 3")])
    done = invoke("run", template, "--host", "local", "--log", tmp_path / "c.log", "--only", "ok",
                  "--only", "breaks", "--format", "json")  # fmt: skip
    data = document(done)
    assert done.code == 1 and data["outcome"] == "failed"
    [breaks] = [s for s in data["steps"] if s["name"] == "breaks"]
    assert breaks["exitCode"] == 3 and "broken" in breaks["message"]
    refusal = assert_refusal(invoke("run", template, "--format", "json"), "run")
    assert refusal["errors"] == ["aibx run: say where to run: --host TARGET (repeatable) or --hosts-file FILE"]
    refusal = assert_refusal(invoke("run", bad_template(tmp_path), "--host", "local", "--format", "json"), "run")
    assert refusal["diagnostics"]


def test_run_dry_run_prints_the_plan_document(tmp_path: Path) -> None:
    done = invoke("run", QUICKSTART, "--host", "local", "--dry-run", "--from", "copy-motd", "--format", "json")
    data = document(done)
    assert done.code == 0
    runs = {s["name"]: s["runs"] for s in data["steps"]}
    assert runs == {"stage deprovisioning script": False, "write-build-info": False, "copy-motd": True,
                    "check-files": True, "remove the staged deprovisioning script": True}  # fmt: skip


def test_run_over_ssh(ssh_target, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("json")
    template = write_template(tmp_path, [shell("hello", f"echo hello > {d}/hello", "echo said hello")])
    done = invoke(
        "run", template, "--host", ssh_target.url, "-i", ssh_target.client_key, "--known-hosts",
        ssh_target.known_hosts, "--log", tmp_path / "c.log", "--format", "json",
    )  # fmt: skip
    data = document(done)
    assert done.code == 0, done.err
    check_run_report(data, ssh_target.url, ["succeeded"] * 3)
    assert data["bootId"] == ssh_target.boot_id
    assert "hello | said hello" in done.err


def test_run_on_a_fleet(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(2)
    template = write_template(tmp_path, [shell("hello", "echo hello")])
    hosts = [arg for t in fleet.targets for arg in ("--host", t.url)]
    done = invoke("run", template, *hosts, *fleet.auth_args(), "--log", tmp_path / "c.log", "--format", "json")
    data = document(done)
    assert done.code == 0, done.err
    assert set(data) == COMMON | DOCUMENTED["aibx run"][1]
    assert data["totals"] == {"hosts": 2, "succeeded": 2} and data["parallel"] == 10
    assert [h["host"] for h in data["hosts"]] == [t.url for t in fleet.targets]
    for host in data["hosts"]:
        assert host["outcome"] == "succeeded" and [s["outcome"] for s in host["steps"]] == ["succeeded"] * 3
    assert "2 hosts: 2 succeeded; exit status 0" in done.err  # the summary table goes to standard error


@pytest.mark.parametrize("verb", ["validate", "plan", "run"])
def test_argparse_usage_errors_print_nothing_on_standard_output(verb: str) -> None:
    done = invoke(verb, QUICKSTART, "--format", "json", "--no-such-option")
    assert done.code == 2 and done.out == "" and "--no-such-option" in done.err


def test_ctrl_c_still_leaves_one_document(tmp_path: Path) -> None:
    """SIGINT during a step: the run stops, exits 130, and standard output is the report saying so."""
    import signal
    import subprocess
    import sys
    import time

    started = tmp_path / "started"
    template = write_template(tmp_path, [shell("long", f"touch {started}", "sleep 60")])
    command = [sys.executable, "-m", "aibx", "run", str(template), "--host", "local", "--only", "long",
               "--log", str(tmp_path / "c.log"), "--format", "json"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    done = Completed(proc.returncode, out, err)
    data = document(done)
    assert done.code == 130 and data["outcome"] == "interrupted", err
    assert [s["outcome"] for s in data["steps"] if s["name"] == "long"] == ["interrupted"]
    assert "interrupted" in err
