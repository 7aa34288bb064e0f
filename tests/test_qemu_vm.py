"""The QEMU test VM itself, through asyncssh: a real guest kernel, a pinned host key, SFTP, a sudo that escalates,
reboots that really restart the kernel (new boot_id, same host key, files kept), the stand-in waagent, and clean
failure and shutdown. Each test says what it proves; the VM's boot and reboot times are in
tests/support/qemu/README.md."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import os
import socket
import time
from pathlib import Path

import asyncssh
import pytest

from tests.support.qemu_vm import BOOT_ID_PATH, QemuVm, VmError, VmImage

pytestmark = pytest.mark.slow

# A client that notices a vanished VM within a few seconds (aibx's own SSH transport does the same).
KEEPALIVE = {"keepalive_interval": 1, "keepalive_count_max": 3}
RECONNECT_WINDOW_S = 120.0  # generous: a reboot takes about 10 s here, on 2 cores emulating the guest


class _ClosingReason(asyncssh.SSHClient):
    """Remembers why asyncssh closed the connection (None: closed cleanly)."""

    reason: Exception | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.reason = exc


async def _connect_noting_why_it_closes(
    vm: QemuVm, user: str | None = None
) -> tuple[asyncssh.SSHClientConnection, _ClosingReason]:
    return await asyncssh.create_connection(_ClosingReason, **vm.ssh_options(user, **KEEPALIVE))


async def _run(connection: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHCompletedProcess:
    return await connection.run(command, check=False, timeout=60)


def test_vm_runs_debians_kernel_and_answers_ssh_with_its_pinned_host_key(qemu_vm: QemuVm, qemu_image: VmImage) -> None:
    async def scenario() -> None:
        async with await qemu_vm.connect() as connection:
            identity = await _run(connection, "id -un; uname -r; cat /etc/hostname")
            assert identity.stdout.split() == ["aibxtest", qemu_image.kernel_release, "aibx-test-vm"]
            host_key = connection.get_server_host_key()
            assert host_key is not None
            assert host_key.export_public_key().decode().split()[:2] == qemu_image.host_key_public.split()[:2]

        # The host key is really checked: an unrelated key in known_hosts is refused.
        wrong = qemu_vm.run_dir / "known_hosts.wrong"
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
        wrong.write_text(f"[{qemu_vm.host}]:{qemu_vm.port} {other}\n")
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await asyncssh.connect(**qemu_vm.ssh_options(known_hosts=str(wrong)))

    asyncio.run(scenario())


def test_guest_has_the_shell_tools_templates_use_and_a_writable_tmp(qemu_vm: QemuVm) -> None:
    async def scenario() -> None:
        async with await qemu_vm.connect() as connection:
            # AIB runs inline Shell lines with sh -e: the first failing line ends the script.
            stopped = await _run(connection, "sh -e -c 'echo before; false; echo after'")
            assert (stopped.exit_status, stopped.stdout) == (1, "before\n")
            tools = await _run(
                connection,
                "set -e; d=$(mktemp -d /tmp/aibx.XXXXXX); mkdir -p $d/a/b; echo hello > $d/a/b/f; "
                "cat $d/a/b/f | grep -q hello; sha256sum $d/a/b/f; rm -r $d",
            )
            assert tools.exit_status == 0, tools.stderr
            assert tools.stdout.split()[0] == hashlib.sha256(b"hello\n").hexdigest()
            shells = await _run(connection, "bash -c 'echo ${BASH_VERSINFO[0]}'; readlink /bin/sh")
            assert shells.stdout.split()[1] == "/bin/busybox"

    asyncio.run(scenario())


def test_sftp_upload_and_download_round_trip(qemu_vm: QemuVm, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    source, copy = tmp_path / "payload.bin", tmp_path / "copy.bin"
    source.write_bytes(payload)

    async def scenario() -> None:
        async with await qemu_vm.connect() as connection, connection.start_sftp_client() as sftp:
            await sftp.makedirs("/tmp/aibx-sftp", exist_ok=True)
            await sftp.put(str(source), "/tmp/aibx-sftp/payload.bin")
            await sftp.chmod("/tmp/aibx-sftp/payload.bin", 0o640)
            attributes = await sftp.stat("/tmp/aibx-sftp/payload.bin")
            assert (attributes.size, attributes.permissions & 0o777) == (len(payload), 0o640)
            checksum = await _run(connection, "sha256sum /tmp/aibx-sftp/payload.bin")
            assert checksum.stdout.split()[0] == hashlib.sha256(payload).hexdigest()
            await sftp.get("/tmp/aibx-sftp/payload.bin", str(copy))
            await sftp.remove("/tmp/aibx-sftp/payload.bin")
        assert copy.read_bytes() == payload

    asyncio.run(scenario())


def test_sudo_really_runs_commands_as_root(qemu_vm: QemuVm) -> None:
    async def scenario() -> None:
        async with await qemu_vm.connect() as connection:
            assert (await _run(connection, "id -u")).stdout == "1000\n"
            assert (await _run(connection, "sudo id -u")).stdout == "0\n"
            assert (await _run(connection, "sudo -n -E id -un")).stdout == "root\n"
            assert (await _run(connection, "sudo -u aibxtest id -un")).stdout == "aibxtest\n"
            assert (await _run(connection, "sudo GREETING=hi sh -c 'echo $GREETING'")).stdout == "hi\n"
            # Root-only files: not readable without sudo, readable with it; sudo's PATH has the sbin directories.
            assert (await _run(connection, "cat /etc/shadow")).exit_status != 0
            assert (await _run(connection, "sudo cat /etc/shadow")).stdout.startswith("root:")
            secure_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            assert (await _run(connection, "sudo sh -c 'echo $PATH'")).stdout == secure_path
            refused = await _run(connection, "sudo -x true")
            assert refused.exit_status == 1
            assert "unsupported option -x" in refused.stderr

    asyncio.run(scenario())


def test_guest_cannot_reach_the_host_network(qemu_vm: QemuVm) -> None:
    """QEMU's user network runs with restrict=on: the only way in or out is the forwarded SSH port."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(0.2)
        result = qemu_vm.run(f"echo probe | nc -w 2 10.0.2.2 {port}; echo exit=$?")
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.exit_status == 0
    assert result.stdout.strip().endswith("exit=1")


def test_stand_in_waagent_records_the_deprovisioning_script_run_through_sudo(qemu_vm: QemuVm) -> None:
    """AIB's default deprovisioning script (aibx's package data, unchanged) reaches the stand-in as root."""
    script = importlib.resources.files("aibx").joinpath("data/DeprovisioningScript.sh").read_bytes()
    before = len(qemu_vm.waagent_calls())

    async def scenario() -> None:
        async with await qemu_vm.connect() as connection:
            unprivileged = await _run(connection, "/usr/sbin/waagent -force -deprovision+user")
            assert unprivileged.exit_status == 1
            assert "must be run as root" in unprivileged.stderr
            async with connection.start_sftp_client() as sftp, sftp.open("/tmp/DeprovisioningScript.sh", "wb") as f:
                await f.write(script)
            deprovision = await _run(connection, "sudo sh -e /tmp/DeprovisioningScript.sh")
            assert deprovision.exit_status == 0, deprovision.stderr

    asyncio.run(scenario())
    calls = qemu_vm.waagent_calls()
    assert len(calls) == before + 1
    _, uid, sudo_user, parent, *arguments = calls[-1].split()
    assert (uid, sudo_user, arguments) == ("uid=0", "sudo_user=aibxtest", ["-force", "-deprovision+user"])
    shell, *script = parent.removeprefix("parent=").split(",")  # sudo runs sh by its full path, as sudo does
    assert shell.endswith("/sh") and script == ["-e", "/tmp/DeprovisioningScript.sh"]


def test_sudo_reboot_restarts_the_guest_kernel_and_ssh_returns_with_the_same_host_key(qemu_vm: QemuVm) -> None:
    """`sudo reboot` as aibxtest: the session is closed, the guest kernel restarts (new boot_id) while QEMU and
    its port stay, sshd comes back with the same, verified host key, the disk keeps its files, /tmp is fresh."""
    boots_before = qemu_vm.boot_count()
    qemu_pid = qemu_vm.pid

    async def scenario() -> None:
        connection, client = await _connect_noting_why_it_closes(qemu_vm)
        async with connection:
            old_boot_id = (await _run(connection, f"cat {BOOT_ID_PATH}")).stdout.strip()
            old_host_key = connection.get_server_host_key()
            assert old_host_key is not None
            marked = await _run(connection, "echo kept > ~/persistent && echo gone > /tmp/volatile && sync")
            assert marked.exit_status == 0
            started = time.monotonic()
            await connection.create_process("sudo reboot")
            await asyncio.wait_for(connection.wait_closed(), timeout=60)
            print(f"connection closed {time.monotonic() - started:.1f}s after sudo reboot")
        assert "keepalive" not in str(client.reason)  # the guest's init closed the session on its way down

        new_boot_id = await qemu_vm.wait_for_new_boot(old_boot_id, timeout=RECONNECT_WINDOW_S)
        print(f"SSH back on a new boot {time.monotonic() - started:.1f}s after sudo reboot")
        assert new_boot_id != old_boot_id
        async with await qemu_vm.connect() as connection:  # known_hosts pins the host key: it must not change
            new_host_key = connection.get_server_host_key()
            assert new_host_key is not None
            assert new_host_key.export_public_key() == old_host_key.export_public_key()
            assert (await _run(connection, f"cat {BOOT_ID_PATH}")).stdout.strip() == new_boot_id
            assert (await _run(connection, "cat ~/persistent")).stdout == "kept\n"
            assert (await _run(connection, "test -e /tmp/volatile")).exit_status == 1

    asyncio.run(scenario())
    assert qemu_vm.boot_count() == boots_before + 1
    assert qemu_vm.pid == qemu_pid and qemu_vm.running


@pytest.mark.parametrize("command", ["sudo shutdown -r now", "sudo systemctl reboot"])
def test_shutdown_and_systemctl_reboot_too(qemu_vm: QemuVm, command: str) -> None:
    """The other ways templates reboot Linux; like the real ones, they return before the machine goes down."""

    async def scenario() -> None:
        async with await qemu_vm.connect(**KEEPALIVE) as connection:
            old_boot_id = (await _run(connection, f"cat {BOOT_ID_PATH}")).stdout.strip()
            result = await connection.run(command, check=False, timeout=30)
            assert (result.exit_status, result.stderr) == (0, "")
            await asyncio.wait_for(connection.wait_closed(), timeout=60)
        assert await qemu_vm.wait_for_new_boot(old_boot_id, timeout=RECONNECT_WINDOW_S) != old_boot_id

    asyncio.run(scenario())


def test_hard_reboot_is_noticed_only_by_keepalive(qemu_vm: QemuVm) -> None:
    """`reboot -f` as root restarts the kernel at once: nobody closes the SSH session, the reboot command never
    returns, and only the client's keepalive notices that the VM went away."""

    async def scenario() -> None:
        connection, client = await _connect_noting_why_it_closes(qemu_vm, qemu_vm.root_user)
        async with connection:
            old_boot_id = (await _run(connection, f"cat {BOOT_ID_PATH}")).stdout.strip()
            started = time.monotonic()
            process = await connection.create_process("reboot -f")
            await asyncio.wait_for(connection.wait_closed(), timeout=60)
            print(f"keepalive noticed the hard reboot after {time.monotonic() - started:.1f}s")
            assert process.exit_status is None  # the command never finished
        assert isinstance(client.reason, asyncssh.ConnectionLost)
        assert "not responding to keepalive" in str(client.reason)

        new_boot_id = await qemu_vm.wait_for_new_boot(old_boot_id, timeout=RECONNECT_WINDOW_S)
        assert new_boot_id != old_boot_id

    asyncio.run(scenario())


def test_readiness_timeout_names_the_last_error_and_shows_the_console_and_stop_leaves_no_process(
    qemu_vm_factory,
) -> None:
    vm = qemu_vm_factory(wait=False)
    pid = vm.pid
    assert pid is not None and vm.running
    with pytest.raises(VmError) as failure:
        vm.wait_until_ready(timeout=1.0)
    message = str(failure.value)
    assert f"no SSH to the VM at 127.0.0.1:{vm.port} within 1s; last error: " in message
    assert "--- serial console (last lines) ---" in message

    vm.close()
    assert not vm.running
    assert not Path(f"/proc/{pid}").exists() or "qemu" not in Path(f"/proc/{pid}/cmdline").read_text()
    with pytest.raises(OSError):
        socket.create_connection((vm.host, vm.port), timeout=2).close()


def test_fresh_vm_from_the_factory_has_its_own_disk_port_and_boot(qemu_vm_factory, qemu_vm: QemuVm) -> None:
    assert qemu_vm.run("echo shared > ~/left-by-another-test").exit_status == 0
    assert qemu_vm.run("grep ' /tmp ' /proc/mounts").stdout.startswith("tmpfs /tmp tmpfs")
    fresh = qemu_vm_factory(tmp_cleared_at_boot=False)
    assert fresh.port != qemu_vm.port and fresh.disk != qemu_vm.disk
    assert fresh.boot_count() == 1
    assert fresh.run("test -e ~/left-by-another-test").exit_status == 1
    # /tmp on the disk (so it survives reboots like the rest of it), still world-writable and sticky
    assert fresh.run("grep ' /tmp ' /proc/mounts; stat -c %a /tmp").stdout == "1777\n"
    assert fresh.run("cat /etc/aibx-disk-populated", user=fresh.root_user).stdout.startswith("populated")
