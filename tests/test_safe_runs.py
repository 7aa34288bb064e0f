"""Destructive steps need an explicit choice, and the deprovisioning script aibx stages is visible and honest
(issue 13, items 1 and 2).

* ``--generalize`` with ``--host local`` is refused unless ``--deprovision-this-machine``; any ``--generalize``
  asks for "yes" on a terminal (``--yes`` skips it) and, without a terminal and ``--yes``, fails with exit 2
  before anything runs.
* the staging step is in ``plan`` and the step count, ``--skip`` can name it, it is removed at the end of a run
  without ``--generalize``, and a file another user left at the shared path is refused with its owner and a fix.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import RecordedRun, aibx_command, invoke
from tests.support.sshd import IS_ROOT, SshTarget
from tests.support.templates import shell, write_template

ROOT = Path(__file__).resolve().parent.parent
STAGED = "/tmp/DeprovisioningScript.sh"
STAGE_STEP = "stage deprovisioning script"
UNSTAGE_STEP = "remove the staged deprovisioning script"


def ssh_auth(target: SshTarget) -> list[str | Path]:
    return ["-i", target.client_key, "--known-hosts", target.known_hosts]


def marker_template(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    return write_template(tmp_path, [shell("touch", f"touch {marker}")]), marker


# ----------------------------------------------------------------------------------------------- item 1
def test_generalize_on_this_machine_is_refused_without_the_explicit_flag(tmp_path: Path) -> None:
    template, marker = marker_template(tmp_path)
    result = invoke("run", template, "--host", "local", "--generalize", "--yes", "--log", tmp_path / "c.log")
    assert result.code == 2, result.text
    assert "--generalize with --host local would deprovision THIS machine" in result.err
    assert "--deprovision-this-machine" in result.err and "nothing was run" in result.err
    assert not marker.exists() and not (tmp_path / "c.log").exists()
    # with the flag the refusal is gone; what stops this run is the missing confirmation (no terminal here)
    result = invoke("run", template, "--host", "local", "--generalize", "--deprovision-this-machine")
    assert result.code == 2, result.text
    assert "THIS machine" not in result.err and "add --yes" in result.err
    assert not marker.exists()


def test_generalize_without_a_terminal_needs_yes(ssh_target: SshTarget, tmp_path: Path) -> None:
    template, _ = marker_template(tmp_path)
    before = len(ssh_target.sessions_started())
    result = invoke("run", template, "--host", ssh_target.url, *ssh_auth(ssh_target), "--generalize",
                    "--log", tmp_path / "c.log", "--format", "json")  # fmt: skip
    assert result.code == 2, result.text
    assert "there is no terminal to confirm it: add --yes (nothing was run)" in result.err
    assert '"exitCode": 2' in result.out
    assert len(ssh_target.sessions_started()) == before  # never connected
    # a dry run runs nothing, so it asks nothing
    assert invoke("run", template, "--host", ssh_target.url, "--generalize", "--dry-run").code == 0


def run_on_a_terminal(args: list[str], answer: str, cwd: Path) -> tuple[int, str]:
    """``aibx ARGS`` with a pseudo-terminal as standard input (and output), typing ``answer`` at the prompt."""
    master, slave = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen([*aibx_command(), *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    seen = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other side is closed: the process ended
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"Type 'yes' to go on:" in seen:
            os.write(master, answer.encode() + b"\n")
            answered = True
        if process.poll() is not None and not ready:
            break
    code = process.wait(timeout=60)
    os.close(master)
    return code, seen.decode(errors="replace")


@pytest.mark.parametrize(("answer", "runs"), [("no", False), ("yes", True)])
def test_generalize_asks_on_a_terminal(ssh_target: SshTarget, tmp_path: Path, answer: str, runs: bool) -> None:
    d = ssh_target.remote_dir("deprovision")
    # a harmless deprovisioning script: the customizer replaces it, as AIB lets customizers do
    replace = shell("replace", f"printf 'echo deprovisioned > {d}/marker\\n' > {STAGED}")
    template = write_template(tmp_path, [replace])
    args = ["run", str(template), "--host", ssh_target.url, *map(str, ssh_auth(ssh_target)), "--generalize",
            "--log", str(tmp_path / "c.log")]  # fmt: skip
    code, text = run_on_a_terminal(args, answer, tmp_path)
    assert "--generalize runs AIB's deprovisioning script last on" in text and ssh_target.url in text, text
    marker = ssh_target.host_path(f"{d}/marker")
    if runs:
        assert code == 0, text
        assert marker.read_text() == "deprovisioned\n"
    else:
        assert code == 2, text
        assert "not confirmed; nothing was run" in text
        assert not marker.exists() and not (tmp_path / "c.log").exists()


def test_generalize_and_its_guards_are_in_the_help() -> None:
    result = invoke("run", "--help")
    assert "--deprovision-this-machine" in result.out and "--yes" in result.out
    assert "--generalize --yes" in result.out


# ----------------------------------------------------------------------------------------------- item 2
def test_the_staging_step_is_in_the_plan_and_the_step_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = invoke("plan", "fixtures/quickstart/hello-linux.json")
    assert result.code == 0, result.err
    assert "5 steps, in run order" in result.out
    assert f"[1] {STAGE_STEP}  (Deprovision, stage)" in result.out
    assert f"write AIB's default deprovisioning script to {STAGED}" in result.out
    assert f"[5] {UNSTAGE_STEP}  (Deprovision, unstage)" in result.out
    assert f"--skip '{STAGE_STEP}'" in result.out
    generalized = invoke("plan", "fixtures/quickstart/hello-linux.json", "--generalize")
    assert UNSTAGE_STEP not in generalized.out and "[5] deprovision  (Deprovision, deprovision)" in generalized.out


def test_the_staged_script_is_removed_after_a_run_without_generalize(ssh_target: SshTarget, tmp_path: Path) -> None:
    probe = shell("probe", f"stat -c '%a %U' {STAGED}")
    run = RecordedRun(tmp_path, write_template(tmp_path, [probe]), "--host", ssh_target.url, *ssh_auth(ssh_target))
    assert run.code == 0, run.result.text
    assert f"probe | 644 {ssh_target.user}" in run.result.out  # it was there for the customizers
    assert list(run.outcomes()) == [STAGE_STEP, "probe", UNSTAGE_STEP]
    assert run.outcomes()[UNSTAGE_STEP] == "succeeded"
    assert "step 3/3" in run.log.read_text()
    assert not ssh_target.host_path(STAGED).exists()


def test_skip_can_name_the_staging_step(ssh_target: SshTarget, tmp_path: Path) -> None:
    mine = ssh_target.host_path(STAGED)
    mine.write_text("echo my own deprovisioning\n")
    probe = shell("probe", f"cat {STAGED}")
    run = RecordedRun(tmp_path, write_template(tmp_path, [probe]), "--host", ssh_target.url, *ssh_auth(ssh_target),
                      "--skip", STAGE_STEP)  # fmt: skip
    assert run.code == 0, run.result.text
    assert run.outcomes() == {STAGE_STEP: "skipped", "probe": "succeeded", UNSTAGE_STEP: "skipped"}
    assert "probe | echo my own deprovisioning" in run.result.out
    assert mine.read_text() == "echo my own deprovisioning\n"  # left alone, both ways


@pytest.mark.skipif(not IS_ROOT, reason="a file of another user needs root to plant (CI runs as root)")
def test_a_staged_script_of_another_user_gives_its_owner_and_a_fix(ssh_target: SshTarget, tmp_path: Path) -> None:
    """After a run as root, a run as another user finds root's file in the sticky /tmp: step 1 fails with the
    owner and what to do, and the file is not touched."""
    planted = ssh_target.host_path(STAGED)
    planted.write_text("echo root's script\n")  # as root: owned by root, mode 0644
    assert ssh_target.user != "root"
    template, _ = marker_template(tmp_path)
    run = RecordedRun(tmp_path, template, "--host", ssh_target.url, *ssh_auth(ssh_target))
    assert run.code == 1, run.result.text
    message = (
        f"aibx: cannot stage {STAGED}: it exists and belongs to root, not to {ssh_target.user} (left by an earlier "
        f"run as that user?); remove it (sudo rm -f {STAGED}), run as that user, or leave this step out with "
        f"--skip '{STAGE_STEP}'"
    )
    assert message in run.result.text
    assert run.outcomes()[STAGE_STEP] == "failed"
    assert planted.read_text() == "echo root's script\n"


def test_a_symlink_at_the_staging_path_is_refused_not_followed(ssh_target: SshTarget, tmp_path: Path) -> None:
    victim = ssh_target.host_path(ssh_target.remote_dir("victim")) / "file"
    victim.write_text("precious\n")
    ssh_target.host_path(STAGED).symlink_to(victim)
    template, _ = marker_template(tmp_path)
    run = RecordedRun(tmp_path, template, "--host", ssh_target.url, *ssh_auth(ssh_target))
    assert run.code == 1, run.result.text
    assert f"aibx: cannot stage {STAGED}: it is a symbolic link" in run.result.text
    assert victim.read_text() == "precious\n"


def test_the_quickstart_leaves_nothing_outside_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's main command, as it is written, run from an empty working directory: the log lands under
    /tmp/aibx-quickstart and the staged deprovisioning script is removed again (if it was aibx's to stage)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- main-command -->", 1)[1].split("```sh", 1)[1].split("```", 1)[0].strip()
    command = block.split("&& .venv/bin/aibx ", 1)[1].split()
    assert command[:4] == ["run", "fixtures/quickstart/hello-linux.json", "--host", "local"]
    assert "/tmp/aibx-quickstart/customization.log" in command
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    command[1] = str(ROOT / command[1])
    Path("/tmp/aibx-quickstart").mkdir(exist_ok=True)
    result = invoke(*command)
    assert result.code == 0, result.text
    assert list(cwd.iterdir()) == []
    log = Path("/tmp/aibx-quickstart/customization.log").read_text()
    assert f"step 5/5 '{UNSTAGE_STEP}': succeeded" in log
