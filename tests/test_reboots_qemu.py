"""A real kernel reboot inside a Shell step: aibx run against the QEMU test VM (tests/support/qemu_vm.py; Debian's
kernel under software emulation), which really restarts its kernel, so the boot id changes by itself.

The guest has no systemd, so it cannot say that it is going down (``systemctl is-system-running``); these steps
end with a command the reboot interrupts, as a template for such a VM must (see the README on reboots).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import invoke
from tests.support.templates import shell, write_template

pytestmark = pytest.mark.slow

BOOT_ID = "/proc/sys/kernel/random/boot_id"


def run_on_vm(vm, tmp_path: Path, steps: list[dict]):  # type: ignore[no-untyped-def]
    report = tmp_path / "report.json"
    result = invoke(
        "run", write_template(tmp_path, steps), "--host", vm.ssh_target(), "-i", vm.client_key, "--known-hosts",
        vm.known_hosts, "--keepalive", "1s", "--reconnect-timeout", "3m", "--log", tmp_path / "customization.log",
        "--report", report,
    )  # fmt: skip
    return result, (json.loads(report.read_text()) if report.exists() else {})


@pytest.mark.parametrize(
    ("reboot", "how"),
    [
        ("sudo reboot; sleep 600", "init stops every process and closes the session"),
        ("sudo reboot -f", "the kernel restarts at once: only the keepalive notices"),
    ],
)
def test_a_real_kernel_reboot_mid_step_and_the_next_step_runs_on_the_new_boot(
    qemu_vm, tmp_path: Path, reboot: str, how: str
) -> None:
    old_boot = qemu_vm.run(f"cat {BOOT_ID}").stdout.strip()
    boots = qemu_vm.boot_count()
    steps = [
        shell("kernel-update", "echo installing a kernel", f"cat {BOOT_ID} > ~/aibx-before", reboot),
        shell("after-reboot", f"cat {BOOT_ID} > ~/aibx-after", "uname -r"),
    ]
    result, report = run_on_vm(qemu_vm, tmp_path, steps)
    assert result.code == 0, result.text
    new_boot = qemu_vm.run(f"cat {BOOT_ID}").stdout.strip()
    assert new_boot != old_boot and qemu_vm.boot_count() == boots + 1
    assert qemu_vm.run("cat ~/aibx-before ~/aibx-after").stdout.split() == [old_boot, new_boot]
    [record] = report["reboots"]
    assert (record["step"], record["bootIdBefore"], record["bootIdAfter"]) == ("kernel-update", old_boot, new_boot)
    steps_by_name = {s["name"]: s for s in report["steps"]}
    assert steps_by_name["kernel-update"]["endedByReboot"] is True
    assert steps_by_name["after-reboot"]["outcome"] == "succeeded"
    assert f"the VM restarted (boot id {new_boot})" in result.out
    # this VM clears /tmp at boot (as Ubuntu does): aibx says that the reboot took AIB's staged deprovisioning script
    lost = "/tmp/DeprovisioningScript.sh, written by step 'stage deprovisioning script', is gone after the reboot in "
    assert [w for w in report["warnings"] if w.startswith(lost)] == [
        next(w for w in report["warnings"] if w.startswith(lost + "step 'kernel-update': the VM probably clears /tmp"))
    ]
    print(f"{how}: away {record['awaySeconds']} s, reason: {record['reason']}")
