"""A Packer configuration as the input of validate, plan and run (issue 10, "Packer configurations as first-class
input"): an HCL2 file, a folder and a legacy JSON template from fixtures/packer-input/, translated in memory as
``aibx translate --to aib`` does, run with ``--host local``, over SSH (the real loopback sshd, with the real sudo
where root matters, and a simulated reboot) and over WinRM (the protocol server), with their Packer semantics:
environment_vars, execute_command with sudo, expect_disconnect, valid_exit_codes, elevated_user.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import RecordedRun, invoke
from tests.support.requirements import require_program, require_root
from tests.support.ssh_run import Run
from tests.support.sshd import SshTarget
from tests.support.winrm_server import Reply, WinRMHost
from tests.support.winrm_windows import WindowsVm

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "packer-input"
HCL = FIXTURES / "hcl" / "build.pkr.hcl"
FOLDER = FIXTURES / "dir"
LEGACY = FIXTURES / "legacy" / "template.json"
WINDOWS = FIXTURES / "windows" / "build.pkr.hcl"
TOKEN = "tok-5e3b0a91c4"  # the sensitive variable's value in hcl/build.pkr.hcl: never shown, never written
FAST = ("--keepalive", "1s", "--connect-timeout", "5s")

# each config, the --var that points its marker file somewhere, and what its steps write there
CONFIGS = {
    "hcl": (HCL, "marker", ["greeting=hello", "uid=0", "before exit 3"]),
    "folder": (FOLDER, "marker", ["app_env=staging uid=0"]),
    "legacy": (LEGACY, "marker", ["owner=ops uid=0"]),
}


def marker_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# ----------------------------------------------------------------------------------------------- validate
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_validate_reads_each_kind_of_packer_config(name: str) -> None:
    config, _var, _lines = CONFIGS[name]
    result = invoke("validate", config)
    assert result.code == 0, result.text
    assert "1 file, 1 template: 0 errors" in result.out and "- valid" in result.out
    assert "Traceback" not in result.text and TOKEN not in result.text


def test_validate_json_holds_the_translation_report() -> None:
    result = invoke("validate", HCL, "--format", "json")
    document = json.loads(result.out)
    assert document["exitCode"] == 0 and document["templates"][0]["name"] == "azure-arm.web"
    [report] = document["translations"]
    assert report["source"] == str(HCL) and report["target"] == "aib"
    subjects = {e["subject"]: e for e in report["entries"]}
    assert subjects['provisioner[0] "shell" "env"']["status"] == "mapped"
    assert "valid_exit_codes [0, 3]" in subjects['provisioner[2] "shell" "exit-3-is-fine"']["detail"]
    # one diagnostic line per approximated entry, at the Packer file and line
    [as_root] = [d for d in document["diagnostics"] if "as-root" in d["message"]]
    assert (as_root["code"], as_root["file"], as_root["line"]) == ("AIB070", str(HCL), 41)
    assert TOKEN not in result.out


# ----------------------------------------------------------------------------------------------- plan
def test_plan_shows_the_report_before_the_plan_and_the_packer_command_lines() -> None:
    result = invoke("plan", HCL)
    assert result.code == 0, result.text
    assert f'{HCL}:41:3: warning[AIB070] [azure-arm.web] provisioner[1] "shell" "as-root"' in result.err
    assert f"aibx: {HCL} [azure-arm.web] read as Packer: 6 mapped, 5 approximated, 0 not carried over" in result.err
    out = result.out
    assert out.startswith(f"Plan for {HCL} (Linux)")
    assert "| export GREETING=hello" in out and "| export TOKEN=***" in out  # environment_vars
    assert "| sudo -n sh -c ' /tmp/script_aibx_1.sh'" in out  # execute_command, {{ .Path }} filled in
    assert '| case " 0 3 " in *" $aibx_rc "*) ;; *) exit "$aibx_rc" ;; esac' in out  # valid_exit_codes
    assert TOKEN not in result.text


def test_plan_json_holds_the_translation_report() -> None:
    result = invoke("plan", LEGACY, "--format", "json")
    document = json.loads(result.out)
    assert document["exitCode"] == 0
    [report] = document["translations"]
    assert report["source"] == str(LEGACY) and report["counts"]["dropped"] == 0
    assert any("sudo password pipe is not needed" in e["detail"] for e in report["entries"])


def test_several_build_sources_need_only_as_packer_build_does() -> None:
    folder = FIXTURES / "multi"
    result = invoke("plan", folder)
    assert result.code == 2
    assert "holds 2 build sources (ubuntu.azure-arm.jammy, ubuntu.azure-arm.noble); pick one with --only" in result.err
    picked = invoke("plan", folder, "--only", "ubuntu.azure-arm.noble")
    assert picked.code == 0, picked.text
    assert "echo hello from noble" in picked.out and "jammy" not in picked.out
    missing = invoke("plan", folder, "--only", "nothing.*")
    assert missing.code == 2 and "no build source matching --only nothing.*" in missing.err


def test_validate_takes_every_build_source_as_packer_validate_does() -> None:
    result = invoke("validate", FIXTURES / "multi")
    assert result.code == 0, result.text
    assert "1 file, 2 templates: 0 errors" in result.out


def test_var_and_var_file_set_packer_variables(tmp_path: Path) -> None:
    (tmp_path / "dev.pkrvars.hcl").write_text('greeting = "from-a-var-file"\n')
    result = invoke("plan", HCL, "--var-file", tmp_path / "dev.pkrvars.hcl", "--var", "marker=/tmp/elsewhere")
    assert result.code == 0, result.text
    assert "| export GREETING=from-a-var-file" in result.out and "> /tmp/elsewhere" in result.out
    undeclared = invoke("plan", HCL, "--var", "nope=1")
    assert undeclared.code == 2 and "AIB074" in undeclared.err and "Traceback" not in undeclared.text


def test_values_from_the_environment_need_allow_env_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PKR_VAR_greeting", "env-greeting-31c7")
    refused = invoke("plan", HCL)
    assert refused.code == 2
    assert "pass --allow-env-values to use it, or give it with -p PKR_VAR_greeting=VALUE" in refused.err
    assert "step 'env' cannot run" in refused.err and "env-greeting-31c7" not in refused.text
    allowed = invoke("plan", HCL, "--allow-env-values")
    assert allowed.code == 0 and "| export GREETING=env-greeting-31c7" in allowed.out


def test_a_script_outside_the_config_folder_is_not_read_without_allow_local_files(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (tmp_path / "outside.sh").write_text("echo outside-the-folder\n")
    source = HCL.read_text().split("build {")[0]
    (config / "build.pkr.hcl").write_text(
        source + 'build {\n  sources = ["source.azure-arm.web"]\n  provisioner "shell" {\n'
        '    name   = "outside"\n    script = "${path.root}/../outside.sh"\n  }\n}\n'
    )
    refused = invoke("plan", config)
    assert "warning[AIB071]" in refused.err and "pass --allow-local-files" in refused.err
    assert "outside-the-folder" not in refused.out and "1 not carried over (AIB071 above: those do not run)" in (
        refused.err
    )
    allowed = invoke("plan", config, "--allow-local-files")
    assert allowed.code == 0, allowed.text
    assert "outside-the-folder" in allowed.out


@pytest.mark.parametrize("option", [["--var", "a=1"], ["--var-file", "x.pkrvars.hcl"], ["--allow-env-values"]])
def test_packer_options_on_an_aib_template_are_an_error(option: list[str]) -> None:
    result = invoke("plan", ROOT / "fixtures" / "quickstart" / "hello-linux.json", *option)
    assert result.code == 2
    assert f"error[AIB074] {option[0]}: for a Packer configuration" in result.err and "-p NAME=VALUE" in result.err


def test_an_unreadable_packer_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pkr.hcl").write_text('source "azure-arm" "x" {\n  location = \n}\n')
    result = invoke("run", tmp_path / "bad.pkr.hcl", "--host", "local")
    assert result.code == 2 and "Traceback" not in result.text
    assert f"{tmp_path / 'bad.pkr.hcl'}:2:14: error[AIB072] HCL syntax error" in result.err
    assert "is not a valid Packer configuration (1 error)" in result.err


def test_a_config_without_an_azure_arm_source_says_why_nothing_runs(tmp_path: Path) -> None:
    source = 'source "amazon-ebs" "x" {\n  region = "us-east-1"\n  ami_name = "x"\n}\n'
    build = 'build {\n  sources = ["source.amazon-ebs.x"]\n  provisioner "shell" { inline = ["echo hi"] }\n}\n'
    (tmp_path / "build.pkr.hcl").write_text(source + build)
    result = invoke("run", tmp_path, "--host", "local")
    assert result.code == 2
    assert "warning[AIB071]" in result.err and "amazon-ebs" in result.err
    assert f"aibx: {tmp_path}: no azure-arm build source to run (AIB071 above says why)" in result.err


def test_a_packer_folder_is_not_searched_for_aib_templates() -> None:
    """A folder with .pkr.hcl files is one Packer configuration; a legacy Packer JSON template met inside a folder of
    AIB templates is passed over, as before (name it to read it)."""
    result = invoke("validate", FIXTURES / "legacy" / "..", "--format", "json")
    document = json.loads(result.out)
    assert str(LEGACY) in [str(Path(p).resolve()) for p in document["skipped"]]


# ----------------------------------------------------------------------------------------------- run, locally
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_run_local(name: str, tmp_path: Path) -> None:
    require_root("the configs' execute_command runs sudo -n, which only root may run without a password here")
    config, var, lines = CONFIGS[name]
    marker = tmp_path / "marker.txt"
    run = RecordedRun(tmp_path, config, "--host", "local", "--var", f"{var}={marker}")
    assert run.code == 0, run.result.text
    assert marker_lines(marker) == lines
    assert "read as Packer" in run.result.err
    assert TOKEN not in run.everything()
    if name == "hcl":
        assert "token set" in run.result.out  # the sensitive value reached the script, shown nowhere


def test_run_json_holds_the_translation_report(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    result = invoke(
        "run", HCL, "--host", "local", "--var", f"marker={marker}", "--format", "json", "--log", tmp_path / "log"
    )
    document = json.loads(result.out)
    assert document["translations"][0]["name"] == "azure-arm.web"


def test_run_only_picks_a_build_source_and_names_steps(tmp_path: Path) -> None:
    run = RecordedRun(
        tmp_path, FIXTURES / "multi", "--host", "local", "--only", "ubuntu.azure-arm.noble", "--only", "hello"
    )
    assert run.code == 0, run.result.text
    assert run.outcomes()["hello"] == "succeeded" and run.outcomes()["goodbye"] == "skipped"
    assert "hello from noble" in run.result.out


# ----------------------------------------------------------------------------------------------- run, over SSH
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_run_over_ssh_with_the_real_sudo(name: str, make_ssh_target: Callable[..., SshTarget], tmp_path: Path) -> None:
    """The target's user has the real sudo without a password (as an Azure VM's admin): execute_command's sudo
    runs the script as root, with the environment_vars, and exit codes in valid_exit_codes pass."""
    require_root("the real sudo lives in the target's own mount namespace")
    require_program("sudo", "sudo")
    target = make_ssh_target(sudo_nopasswd=True)
    config, var, lines = CONFIGS[name]
    marker = f"{target.remote_dir('packer')}/marker.txt"
    run = Run(tmp_path, target, config, "--var", f"{var}={marker}", *FAST)
    assert run.code == 0, run.result.text
    assert marker_lines(target.host_path(marker)) == lines
    assert TOKEN not in run.everything()


def test_an_exit_code_outside_valid_exit_codes_fails_the_step(ssh_target: SshTarget, tmp_path: Path) -> None:
    marker = f"{ssh_target.remote_dir('packer')}/marker.txt"
    (tmp_path / "codes.pkrvars.hcl").write_text(f'marker = "{marker}"\n')
    config = tmp_path / "config"
    config.mkdir()
    (config / "build.pkr.hcl").write_text(HCL.read_text().replace("exit 3", "exit 4"))
    run = Run(tmp_path, ssh_target, config, "--var-file", tmp_path / "codes.pkrvars.hcl", *FAST)
    assert run.code == 1, run.result.text
    assert run.outcomes()["exit-3-is-fine"] == "failed" and run.step("exit-3-is-fine")["exitCode"] == 4


def test_expect_disconnect_a_real_reboot_passes_the_boot_id_check(make_rebootable_target, tmp_path: Path) -> None:
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    target, watcher = make_rebootable_target(down_s=1.0, refused_s=0.5)
    d = target.remote_dir("reboot")
    first_boot = target.boot_id
    run = Run(tmp_path, target, FIXTURES / "reboot", "--var", f"dir={d}", *FAST)
    assert run.code == 0, run.result.text
    assert "expect_disconnect" in run.result.err  # the report line says how it is carried
    assert run.outcomes()["update-kernel"] == "succeeded"
    assert target.boot_count == 2 and target.boot_id != first_boot
    assert target.host_path(f"{d}/before").exists() and not target.host_path(f"{d}/after").exists()
    assert target.host_path(f"{d}/boot").read_text().strip() == target.boot_id  # the next one ran on the new boot
    [reboot] = run.report["reboots"]
    assert reboot["step"] == "update-kernel" and reboot["confirmed"] is True
    assert (reboot["bootIdBefore"], reboot["bootIdAfter"]) == (first_boot, target.boot_id)
    assert [line.split()[0] for _, line in watcher.requests] == ["reboot"]


def test_without_expect_disconnect_a_restart_fails_the_step_as_in_packer(
    make_rebootable_target, tmp_path: Path
) -> None:
    """Packer fails a shell provisioner whose connection drops unless it has expect_disconnect = true: the run rides
    the restart out (the VM is usable for the next run) and fails the step, saying what to add."""
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    target, _watcher = make_rebootable_target(down_s=0.5, refused_s=0.2)
    d = target.remote_dir("reboot")
    config = tmp_path / "config"
    config.mkdir()
    text = (FIXTURES / "reboot" / "build.pkr.hcl").read_text()
    (config / "build.pkr.hcl").write_text(text.replace("    expect_disconnect = true\n", ""))
    plan = invoke("plan", config, "--var", f"dir={d}")
    assert "note: Packer, no expect_disconnect: a restart during this step fails it" in plan.out
    run = Run(tmp_path, target, config, "--var", f"dir={d}", *FAST)
    assert run.code == 1, run.result.text
    assert target.boot_count == 2  # the VM did restart, and is back
    assert run.outcomes()["update-kernel"] == "failed" and run.outcomes()["after-reboot"] == "not run"
    assert run.step("update-kernel")["reboots"] == 1
    message = run.step("update-kernel")["message"]
    assert "no expect_disconnect = true" in message and "add expect_disconnect = true" in message


def test_the_engine_hint_is_not_written_to_the_aib_template(tmp_path: Path) -> None:
    result = invoke("translate", FIXTURES / "reboot", "--to", "aib", "--allow-lossy")
    assert result.code == 0, result.text
    assert "expect_disconnect" not in result.out and "expectDisconnect" not in result.out
    resource = json.loads(result.out)
    assert [s["name"] for s in resource["properties"]["customize"]] == ["update-kernel", "after-reboot"]


# ----------------------------------------------------------------------------------------------- Windows
def test_elevated_user_and_valid_exit_codes_in_the_windows_plan() -> None:
    result = invoke("plan", WINDOWS)
    assert result.code == 0, result.text
    steps = result.out.split("\n[")
    as_system = next(s for s in steps if "] as-system " in s)
    as_user = next(s for s in steps if "] as-build-user " in s)
    pending = next(s for s in steps if "] reboot-pending " in s)
    assert "(run the script as SYSTEM (scheduled task))" in as_system
    assert "(run the script elevated (scheduled task, highest privileges, as the connecting user))" in as_user
    assert "success: exit code 0, 3010" in pending
    # an elevated_user aibx cannot become is said, at its line
    assert (
        f'{WINDOWS}:42:3: warning[AIB070] [azure-arm.win] provisioner[2] "powershell" "as-service-account": '
        "approximated: PowerShell inline (elevated_user 'svc_deploy': runElevated runs as AIB's build user instead)"
        in result.err
    )
    assert "Adm1n-Pw-not-real" not in result.text


def test_windows_run_over_winrm(make_winrm_host: Callable[..., WinRMHost], tmp_path: Path, monkeypatch) -> None:
    """The WinRM exchange: SYSTEM and the build user run elevated in a scheduled task, environment_vars reach the
    script as $env: lines, exit 3010 passes valid_exit_codes."""
    monkeypatch.setenv("AIBX_TEST_PACKER_PW", "Pw-for-winrm-8d1e")
    vm = WindowsVm(make_winrm_host(users={"packeradmin": "Pw-for-winrm-8d1e"}, allow_unencrypted=True))
    vm.on_script("whoami", lambda cmd, run: Reply(run.identity + "\r\n"))
    vm.on_script("exit 3010", Reply("installing\r\n", "", 3010))
    run = RecordedRun(
        tmp_path,
        WINDOWS,
        "--host",
        f"winrm://packeradmin@127.0.0.1:{vm.host.port}",
        "--password-env",
        "AIBX_TEST_PACKER_PW",
        "--winrm-auth",
        "ntlm",
        "--connect-timeout",
        "5s",
    )
    assert run.code == 0, run.result.text
    ran = [(r.run_as, r.task is not None) for r in vm.runs if "whoami" in r.text]
    assert ran == [("System", True), ("User", True), ("User", True)]
    [user_script] = [r.text for r in vm.runs if "role=" in r.text]
    assert user_script.startswith('$env:ROLE="web"\n')
    assert run.step("reboot-pending")["exitCode"] == 3010 and run.outcomes()["reboot-pending"] == "succeeded"
    assert "Adm1n-Pw-not-real" not in run.everything() and vm.leftovers() == []
