"""End to end: ``aibx run`` (the real command line) runs a realistic Linux image template on a real VM.

The VM is the QEMU test VM (tests/support/qemu_vm.py: Debian's kernel under software emulation, busybox, sshd,
the stand-in waagent), started once for this module with ``/tmp`` kept on its disk, as on RHEL, the template's
source image. The template is ``fixtures/e2e/linux-golden-image.json``, an ARM deployment with parameters as a
platform team writes one: a File from a ``file:`` URI next to the template, a Shell step that writes configuration
with sudo, a File and a Shell ``scriptUri`` (both sha256-checked) from a storage container, played by an HTTPS
server on loopback (aibx fetches them; the VM has no network), a kernel update ending in a plain ``sudo reboot``
that really restarts the guest kernel, a step that proves it runs on the new boot, an inVMValidation, and AIB's
implicit deprovisioning with ``--generalize``. The second case (``fixtures/e2e/linux-fails-after-reboot.json``)
fails in the step after the reboot.

Everything is checked the way a user would: the exit code, the JSON report (every step's outcome, the reboot with
its boot ids), customization.log, the files on the VM (read back over SSH), and the stand-in waagent's record of
the deprovisioning (as root, through sudo, from AIB's default script).

Time, measured on the project's machine (2 cores, no KVM, shared with other developers' test runs; image cached):
this module alone 55-72 s at load 2.5-4 (VM start to SSH 10-13 s, the golden image run 22-31 s, the failing run
25-28 s; each real reboot about 13-15 s of it), 89-112 s with two extra CPU-bound processes running. In the full
suite (862 tests, 7 min 42 s at load 2-4) it took 80 s (setup 11 s, 37 s, 33 s); in an earlier full run at load
3-5, 132 s of 10 min 16 s. It is marked slow and runs in the normal suite.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aibx.provisioners.deprovision import linux_deprovision_command
from tests.support.cli import invoke
from tests.support.http_server import ContentServer
from tests.support.qemu_vm import BOOT_ID_PATH, QemuVm, VmImage

pytestmark = pytest.mark.slow

E2E = Path(__file__).resolve().parent.parent / "fixtures" / "e2e"
GOLDEN = E2E / "linux-golden-image.json"
FAILING = E2E / "linux-fails-after-reboot.json"
STORAGE = E2E / "storage"  # what the template's storage container holds


@pytest.fixture(scope="module")
def golden_vm(qemu_image: VmImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuVm]:
    """One VM for both cases. /tmp survives reboots on it, as on RHEL: AIB's deprovisioning script, staged in /tmp
    before the customizers, is still there after the kernel update's reboot (test_reboots_qemu.py shows what
    aibx says on a VM that clears /tmp at boot)."""
    vm = QemuVm(qemu_image, tmp_path_factory.mktemp("e2e-vm"), tmp_cleared_at_boot=False)
    try:
        vm.start()
        vm.wait_until_ready()
        yield vm
    finally:
        vm.close()


def aibx_run(vm: QemuVm, template: Path, workdir: Path, *extra: str):  # type: ignore[no-untyped-def]
    log, report = workdir / "customization.log", workdir / "report.json"
    result = invoke(
        "run", template, "--host", vm.ssh_target(), "-i", vm.client_key, "--known-hosts", vm.known_hosts,
        "--keepalive", "1s", "--reconnect-timeout", "3m", "--log", log, "--report", report, *extra,
    )  # fmt: skip
    return result, json.loads(report.read_text()), log.read_text()


def as_root(vm: QemuVm, command: str) -> str:
    completed = vm.run(command, user=vm.root_user)
    assert completed.exit_status == 0, f"{command}: {completed.stderr}"
    return str(completed.stdout)


def test_a_golden_image_template_runs_end_to_end_with_a_reboot_and_deprovisioning(
    golden_vm: QemuVm, tls_content_server: ContentServer, tmp_path: Path
) -> None:
    for name in ("contoso-agent.json", "install-contoso-agent.sh"):
        tls_content_server.serve(f"/artifacts/{name}", (STORAGE / name).read_bytes())
    artifacts = tls_content_server.url("/artifacts")
    boot_before = golden_vm.run(f"cat {BOOT_ID_PATH}").stdout.strip()
    boots_before = golden_vm.boot_count()
    waagent_calls_before = len(golden_vm.waagent_calls())

    result, report, log = aibx_run(
        golden_vm, GOLDEN, tmp_path, "-p", f"artifactsBaseUri={artifacts}", "--generalize", "--yes"
    )

    # exit code and report: every step ran and succeeded, in order, the deprovisioning last
    assert result.code == 0, result.text
    assert (report["outcome"], report["exitCode"]) == ("succeeded", 0)
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == [
        "stage deprovisioning script", "motd", "prepare-system", "agent-config", "install-agent", "kernel-update",
        "after-reboot", "validate-image", "deprovision",
    ]  # fmt: skip
    assert {name: s["outcome"] for name, s in steps.items()} == dict.fromkeys(steps, "succeeded")
    assert [s["phase"] for s in report["steps"]][-2:] == ["validate", "deprovision"]
    assert steps["deprovision"]["exitCode"] == 0
    assert report["totals"] == {"steps": 9, "succeeded": 9, "failed": 0, "skipped": 0, "notRun": 0, "reboots": 1}
    assert not [w for w in report["warnings"] if "Deprovisioning" in w or "DeprovisioningScript" in w]
    # aibx fetched the File and the scriptUri from the storage container once each, before connecting
    assert sorted(tls_content_server.requests) == [f"/artifacts/{name}" for name in sorted(os.listdir(STORAGE))]

    # one real reboot, in the kernel-update step: a new boot id, recorded as such
    boot_after = golden_vm.run(f"cat {BOOT_ID_PATH}").stdout.strip()
    assert boot_after != boot_before and golden_vm.boot_count() == boots_before + 1
    [reboot] = report["reboots"]
    assert (reboot["step"], reboot["bootIdBefore"], reboot["bootIdAfter"]) == ("kernel-update", boot_before, boot_after)
    assert reboot["confirmed"] is True
    assert steps["kernel-update"]["reboots"] == 1
    assert report["bootId"] == boot_after

    # customization.log: each step's start and end, its output, the reboot, the deprovisioning command
    for index, name in enumerate(steps, start=1):
        assert f"step {index}/9 '{name}' (" in log and f"step {index}/9 '{name}': succeeded" in log
    for line in [
        "OUT   prepare-system: preparing the system as aibxtest, with sudo as root",
        "OUT   prepare-system: platform configuration written",
        "OUT   install-agent: installing the Contoso agent into /opt/contoso/agent",
        "OUT   install-agent: contoso-agent 2.4.1 (x86_64)",
        f"OUT   kernel-update: {boot_before}",
        f"OUT   after-reboot: running on the new boot {boot_after} (was {boot_before})",
        "OUT   validate-image: contoso-agent 2.4.1 (x86_64)",
        "OUT   validate-image: image validation passed",
        f"the VM restarted: boot id {boot_before} -> {boot_after}",
        f"deprovision: exec {linux_deprovision_command('/tmp/DeprovisioningScript.sh')}",
        "run succeeded",
    ]:
        assert line in log, line
    assert log.index("step 6/9 'kernel-update': succeeded") < log.index("step 7/9 'after-reboot' (")

    # the VM: what the template wrote, with the owners and modes it asked for, before and after the reboot
    assert as_root(golden_vm, "cat /etc/contoso/platform.conf") == (
        "environment=production\nimage_version=1.0.0\nkernel_updated=true\n"
    )
    assert as_root(golden_vm, "cat /etc/motd") == (E2E / "files/motd").read_text()
    assert as_root(golden_vm, "cat /opt/contoso/agent/agent.json") == (STORAGE / "contoso-agent.json").read_text()
    modes = as_root(golden_vm, "stat -c '%n %a %U' /etc/contoso/platform.conf /etc/motd /opt/contoso/agent/agent.json "
                               "/opt/contoso/agent/bin/contoso-agent")  # fmt: skip
    assert modes.splitlines() == [
        "/etc/contoso/platform.conf 644 root",
        "/etc/motd 644 root",
        "/opt/contoso/agent/agent.json 640 root",
        "/opt/contoso/agent/bin/contoso-agent 755 root",
    ]
    recorded = as_root(golden_vm, "cat /var/lib/contoso/boot-id-before-reboot /var/lib/contoso/boot-id-after-reboot")
    assert recorded.split() == [boot_before, boot_after]

    # deprovisioning: AIB's default script, staged before the customizers, survived the reboot and ran last, as
    # root through sudo; it called waagent exactly once
    staged = golden_vm.run("cat /tmp/DeprovisioningScript.sh").stdout
    assert staged == importlib.resources.files("aibx").joinpath("data/DeprovisioningScript.sh").read_text()
    [call] = golden_vm.waagent_calls()[waagent_calls_before:]
    _, uid, sudo_user, parent, *arguments = call.split()
    assert (uid, sudo_user, arguments) == ("uid=0", "sudo_user=aibxtest", ["-force", "-deprovision+user"])
    shell, *script = parent.removeprefix("parent=").split(",")  # sudo ran sh by its full path, as sudo does
    assert shell.endswith("/sh") and script == ["/tmp/DeprovisioningScript.sh"]


def test_a_step_failing_after_the_reboot_stops_the_run_before_deprovisioning(golden_vm: QemuVm, tmp_path: Path) -> None:
    boot_before = golden_vm.run(f"cat {BOOT_ID_PATH}").stdout.strip()
    waagent_calls_before = len(golden_vm.waagent_calls())
    golden_vm.run("rm -f ~/harden-ssh-ran ~/validate-image-ran")

    result, report, log = aibx_run(golden_vm, FAILING, tmp_path, "--generalize", "--yes")

    assert result.code == 1, result.text
    assert (report["outcome"], report["exitCode"]) == ("failed", 1)
    outcomes = {s["name"]: s["outcome"] for s in report["steps"]}
    assert outcomes == {
        "stage deprovisioning script": "succeeded",
        "kernel-update": "succeeded",
        "enable-agent-service": "failed",
        "harden-ssh": "not run",
        "validate-image": "not run",
        "deprovision": "not run",
    }
    [reboot] = report["reboots"]
    boot_after = reboot["bootIdAfter"]
    assert reboot["step"] == "kernel-update" and reboot["bootIdBefore"] == boot_before != boot_after
    failed = next(s for s in report["steps"] if s["name"] == "enable-agent-service")
    assert failed["exitCode"] == 1
    assert "/opt/contoso/agent/contoso-agent.service" in failed["message"]

    # the log says why: the failing command's error after the new boot, the failure, and the steps left out
    assert f"OUT   enable-agent-service: enabling the agent on boot {boot_after}" in log
    assert "ERR   enable-agent-service: cp: can't stat '/opt/contoso/agent/contoso-agent.service'" in log
    assert "step 3/6 'enable-agent-service': failed, exit code 1" in log
    assert "OUT   enable-agent-service: agent service enabled" not in log
    assert "step 'enable-agent-service' failed" in log
    assert "sudo -n sh /tmp/DeprovisioningScript.sh" not in log
    assert "step 'enable-agent-service' failed" in result.err + result.out

    # nothing after the failure touched the VM: no later step, no deprovisioning
    assert golden_vm.run("ls ~/harden-ssh-ran ~/validate-image-ran").exit_status != 0
    assert golden_vm.waagent_calls()[waagent_calls_before:] == []
    assert golden_vm.run(f"cat {BOOT_ID_PATH}").stdout.strip() == boot_after
