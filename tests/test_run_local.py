"""aibx run --host local: the README's main command, step selection, dry runs and invalid input."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import invoke
from tests.support.templates import shell, write_template

ROOT = Path(__file__).resolve().parent.parent


def local_run(tmp_path: Path, template: Path, *extra: object):  # type: ignore[no-untyped-def]
    return invoke(
        "run", template, "--host", "local", "--log", tmp_path / "c.log", "--report", tmp_path / "r.json", *extra
    )


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "r.json").read_text())


def test_readme_main_command_runs_the_quickstart(tmp_path: Path) -> None:
    """The README's first command, as written, in a fresh virtualenv (pip install . from the checkout)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- main-command -->", 1)[1].split("```sh", 1)[1].split("```", 1)[0].strip()
    assert "aibx run fixtures/quickstart/hello-linux.json --host local" in block
    venv = tmp_path / "venv"
    command = block.replace(".venv", shlex.quote(str(venv)))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check-files | quickstart validation passed" in result.stdout
    assert Path("/tmp/aibx-quickstart/motd.txt").read_text() == "Welcome to an image customized with aibx.\n"
    (ROOT / "customization.log").unlink(missing_ok=True)  # the command's default log, next to the checkout


def test_quickstart_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = local_run(tmp_path, "fixtures/quickstart/hello-linux.json")
    assert result.code == 0, result.text
    assert [s["outcome"] for s in report(tmp_path)["steps"]] == ["succeeded"] * 5
    log = (tmp_path / "c.log").read_text()
    assert "step 2/5 'write-build-info' (Shell, customize): started" in log
    assert "OUT   write-build-info: built by aibx on" in log


def selection_template(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "ran"
    steps = [shell(name, f"echo {name} >> {out}") for name in ("one", "two", "three")]
    return write_template(tmp_path, steps, validations=[shell("check", f"echo check >> {out}")]), out


def test_from_starts_at_a_step_and_leaves_the_staged_script_alone(tmp_path: Path) -> None:
    template, out = selection_template(tmp_path)
    result = local_run(tmp_path, template, "--from", "two")
    assert result.code == 0, result.text
    assert out.read_text().split() == ["two", "three", "check"]
    outcomes = {s["name"]: (s["outcome"], s["message"]) for s in report(tmp_path)["steps"]}
    assert outcomes["one"] == ("skipped", "before --from 'two'")
    assert outcomes["stage deprovisioning script"][0] == "skipped"


def test_only_and_skip(tmp_path: Path) -> None:
    template, out = selection_template(tmp_path)
    assert local_run(tmp_path, template, "--only", "one", "--only", "check").code == 0
    assert out.read_text().split() == ["one", "check"]
    out.unlink()
    assert local_run(tmp_path, template, "--skip", "two").code == 0
    assert out.read_text().split() == ["one", "three", "check"]


def test_an_unknown_step_name_is_invalid_input(tmp_path: Path) -> None:
    template, out = selection_template(tmp_path)
    result = local_run(tmp_path, template, "--only", "four")
    assert result.code == 2
    assert (
        "--only 'four': no such customizer or validator (the steps are: 'one', 'two', 'three', 'check')" in result.err
    )
    assert not out.exists()


def test_dry_run_shows_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    template, out = selection_template(tmp_path)
    result = local_run(tmp_path, template, "--dry-run", "--skip", "two")
    assert result.code == 0
    assert "[3] two  (Shell, customize)" in result.out and "skipped: --skip" in result.out
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_steps_that_cannot_run_refuse_the_run_but_only_when_selected(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    steps = [
        shell("fine", f"echo fine >> {out}"),
        {"type": "Shell", "name": "pending", "scriptUri": "https://<account>.blob.core.windows.net/s.sh"},
    ]
    template = write_template(tmp_path, steps)
    refused = local_run(tmp_path, template)
    assert refused.code == 2 and "step 'pending' cannot run" in refused.err and "pass -p account=VALUE" in refused.err
    assert not out.exists()
    assert local_run(tmp_path, template, "--skip", "pending").code == 0  # only the steps that need the value
    assert out.read_text() == "fine\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "ftp://x"], "unknown scheme ftp://"),
        (["--host", "a@b@c"], "is not a target"),
        (["--host", "vm", "--password-env", "AIBX_NO_SUCH_VARIABLE"], "AIBX_NO_SUCH_VARIABLE"),
        (["--host", "vm", "-i", "/no/such/key"], "no such file"),
        (["--host", "local", "--reconnect-timeout", "soon"], "not a duration"),
        (["--host", "local", "--timeout-minutes", "0"], "--timeout-minutes"),
        (["--host", "local", "--report", "/no/such/folder/r.json"], "its folder does not exist"),
    ],
)
def test_invalid_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    template, _ = selection_template(tmp_path)
    result = invoke("run", template, "--log", tmp_path / "c.log", *args)
    assert result.code == 2 and message in result.err, result.err


def test_windows_templates_are_not_run_over_ssh_or_locally(tmp_path: Path) -> None:
    result = local_run(tmp_path, ROOT / "fixtures/plan/windows-file.json")
    assert result.code == 2 and "Windows template" in result.err


def test_build_timeout_locally(tmp_path: Path) -> None:
    template = write_template(tmp_path, [shell("hangs", f"echo $$ > {tmp_path}/pid", "sleep 120")])
    result = local_run(tmp_path, template, "--timeout-minutes", "0.02")
    assert result.code == 4, result.text
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_the_module_runs_as_python_m_aibx(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "aibx", "run", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--reconnect-timeout" in result.stdout and "--password-env" in result.stdout


def test_secure_parameter_values_are_redacted(tmp_path: Path) -> None:
    from tests.support.templates import image_template

    resource = image_template([shell("uses-token", "[concat('echo token=', parameters('apiToken'))]")])
    resource.update(name="tpl", apiVersion="2024-02-01")
    deployment = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"apiToken": {"type": "securestring"}},
        "resources": [resource],
    }
    template = tmp_path / "deploy.json"
    template.write_text(json.dumps(deployment))
    secret = "s3cr3t-api-token-value"
    result = local_run(tmp_path, template, "-p", f"apiToken={secret}")
    assert result.code == 0, result.text
    assert "uses-token | token=***" in result.out
    everything = result.text + (tmp_path / "c.log").read_text() + (tmp_path / "r.json").read_text()
    assert secret not in everything
    plan = invoke("plan", template, "-p", f"apiToken={secret}")
    assert plan.code == 0 and "echo token=***" in plan.out and secret not in plan.out


def test_a_closed_pipe_on_the_console_does_not_stop_the_run(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    template = write_template(tmp_path, [shell("noisy", "seq 1 20000"), shell("after", f"touch {out}")])
    command = (
        f"{shlex.quote(sys.executable)} -m aibx run {shlex.quote(str(template))} --host local "
        f"--log {shlex.quote(str(tmp_path / 'c.log'))} | head -n 3"
    )
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert out.exists()  # the run went on to the end
    assert "OUT   noisy: 20000" in (tmp_path / "c.log").read_text()


def test_dry_run_exits_2_like_plan_when_a_selected_step_cannot_run(tmp_path: Path) -> None:
    steps = [shell("fine", "true"), {"type": "Shell", "name": "pending", "scriptUri": "https://<account>.example/s.sh"}]
    template = write_template(tmp_path, steps)
    result = local_run(tmp_path, template, "--dry-run")
    assert result.code == 2 and "CANNOT RUN" in result.out and "step 'pending' cannot run" in result.err
    assert local_run(tmp_path, template, "--dry-run", "--skip", "pending").code == 0


def test_scripts_run_with_the_sessions_umask_not_the_wrappers(tmp_path: Path) -> None:
    """aibx writes each script to a private file (umask 077), but the script runs with the session's umask, as under
    AIB and Packer: with 077, ``sudo mkdir -p /opt/app`` would make a directory only root can enter."""
    made = tmp_path / "made"
    steps = [
        shell("inline", f"mkdir {made}", f"touch {made}/inline"),
        {"type": "Shell", "name": "script", "scriptUri": "file:script.sh"},
    ]
    (tmp_path / "script.sh").write_text(f"#!/bin/sh\ntouch {made}/from-script\n")
    old = os.umask(0o022)
    try:
        result = local_run(tmp_path, write_template(tmp_path, steps))
    finally:
        os.umask(old)
    assert result.code == 0, result.text
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (made, made / "inline", made / "from-script")}
    assert modes == {"made": "0o755", "inline": "0o644", "from-script": "0o644"}
