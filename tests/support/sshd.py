"""A real OpenSSH server on loopback for the tests: the project's own SSH target.

``SshTarget`` writes a per-target run directory (generated host and client keys, ``known_hosts``, ``sshd_config``,
``sshd.log``), starts ``sshd -D -e`` on a kernel-assigned port of 127.0.0.1 and waits for *its own* "Server
listening" line and banner (another process may own any fixed port).

* As root (CI): logins are as the test user ``aibxtest`` (created on demand, with a password and no real sudo),
  and sshd runs in its own pid and mount namespace. Inside it, ``/tmp`` is the target's own directory (as on a
  separate VM: tests see it at ``target.host_path("/tmp/...")``), ``/proc/sys/kernel/random/boot_id`` is the
  target's ``boot_id`` file, and ``/usr/bin/systemctl`` is the power shim, so not even ``/sbin/reboot`` can reach
  the real one. Killing the namespace's init takes every session process with it, like a power cut.
* Unprivileged: logins are as the current user with key auth only (sshd cannot check passwords without root);
  ``/tmp`` and the boot id are the machine's own.

The shims in ``tests/support/shims/`` (``sudo`` runs the command as the same unprivileged user; ``reboot``,
``shutdown``, ``poweroff``, ``halt`` and ``systemctl`` only append a request to ``$AIBX_CTL_DIR/power.request``)
come first on the session's PATH. They are copied into the run directory, which the test user can read even when
the checkout lives under a private home directory. A ``windows_like`` target also gets
``tests/support/windows_shims/``: ``windows-shell`` as sshd's ForceCommand, a stand-in for cmd.exe (Windows
OpenSSH's default shell) that keeps backslashes in ``powershell.exe`` command lines and serves SFTP from
``winroot/`` (where ``C:/Windows/Temp/x`` lands), and ``powershell.exe`` playing the effects of aibx's PowerShell.

Simulated reboots (``reboot()``; ``tests/support/power.py`` performs the ones the shims ask for): the whole target
dies at once (every session closes), then the port is held by a ``PortBlackhole`` for ``down_s`` (connection
attempts time out), then nothing listens for ``refused_s`` (connection refused), then sshd starts again with the
same host key and, when isolated, a new boot id (unprivileged runs keep the machine's: a reboot cannot be
confirmed there). ``restart_sshd()`` is the opposite case: every connection drops, the boot id stays.
``tests/support/netns.py`` puts a target in its own network namespace for the realistic variant.

Pitfalls handled (see the test-target notes): /run/sshd for a root sshd; ``chpasswd`` unlocks the account
(``UsePAM no`` refuses locked accounts even for keys); ``StrictModes no`` for keys below world-writable dirs;
kernel-assigned ports; overrides come before defaults in sshd_config (the first keyword wins); the whole process
tree is killed, not only the listener.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.support.requirements import find_program

TEST_USER = "aibxtest"
TEST_PASSWORD = "Aibx-Test-Passw0rd"
SHIMS = Path(__file__).resolve().parent / "shims"
WINDOWS_SHIMS = Path(__file__).resolve().parent / "windows_shims"
IS_ROOT = os.geteuid() == 0
LOOPBACK = "127.0.0.1"


def run_base_dir() -> Path:
    """Where targets keep their run directories: $AIBX_TEST_RUN_DIR, else /var/tmp as root (a target's /tmp is
    replaced inside its namespace, so its own files cannot live there), else the system temp dir."""
    configured = os.environ.get("AIBX_TEST_RUN_DIR")
    if configured:
        return Path(configured)
    return Path("/var/tmp") if IS_ROOT and Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())


def ensure_test_user(user: str = TEST_USER, password: str = TEST_PASSWORD) -> None:
    """Create the login user (root only). ``chpasswd`` also unlocks it: with ``UsePAM no`` sshd refuses accounts
    whose shadow entry starts with '!', even for public-key auth."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        result = subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], capture_output=True, text=True)
        if result.returncode not in (0, 9):  # 9: created meanwhile by a concurrent test run
            raise RuntimeError(f"useradd {user}: {result.stderr.strip()}") from None
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True, capture_output=True)


def keygen(path: Path, kind: str = "ed25519") -> None:
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True, capture_output=True
        )


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_banner(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SSH banner from {host}:{port} after {timeout}s")
        time.sleep(0.01)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class PortBlackhole:
    """An unreachable host without privileges: the port is held by a listener whose accept queue is full, so the
    kernel silently drops new SYNs and clients see a connect timeout (not "connection refused")."""

    def __init__(self, host: str = LOOPBACK, port: int = 0) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(0)
        self.host, self.port = self.listener.getsockname()[:2]
        # one connection fills the queue; not waited for: a client already retrying this port (aibx waiting for
        # the "VM") may have taken the only slot between listen() and here, and then this SYN is dropped too
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((self.host, self.port))
        self.fillers = [filler]

    def close(self) -> None:
        for s in [*self.fillers, self.listener]:
            s.close()

    def __enter__(self) -> PortBlackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PortTaken(Exception):
    pass


class SilentPort:
    """A port that accepts connections and never says a word, as a NAT port forward (QEMU's user network,
    VirtualBox) does while the VM behind it is down."""

    def __init__(self, host: str = LOOPBACK, port: int = 0) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(64)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        """Stop accepting. Connections accepted so far stay open and silent (as a port forward's do when the VM
        behind it comes back: nobody ever answers them) until ``release()``."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(timeout=5)

    def release(self) -> None:
        for conn in self.accepted:
            conn.close()


class SshTarget:
    """One sshd on 127.0.0.1. ``with SshTarget("name") as t:`` prepares, starts and finally removes it."""

    def __init__(
        self,
        name: str,
        *,
        base_dir: Path | None = None,
        password_auth: bool = True,
        isolated: bool | None = None,
        config_overrides: str = "",
        client_key: Path | None = None,
        windows_like: bool = False,
        host: str = LOOPBACK,
        port: int | None = None,
        tmp_size: str | None = None,
        sudo_asks_password: bool = False,
        sudo_nopasswd: bool = False,
        login_shell: str | None = None,
        missing_programs: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.host = host
        self.port = port or free_port(host)
        self.port_chosen = port is None  # by the kernel: another one will do if someone takes it first
        self.user = TEST_USER if IS_ROOT else pwd.getpwuid(os.getuid()).pw_name
        self.password = TEST_PASSWORD if IS_ROOT and password_auth else None
        # own pid + mount namespace (root only): private /tmp, own boot id, systemctl shim, kill-all on stop
        self.isolated = IS_ROOT if isolated is None else isolated
        self.config_overrides = config_overrides
        base = base_dir or run_base_dir()
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"aibx-sshd-{name[:40]}-", dir=base))
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = client_key or self.dir / "id_ed25519"  # a fleet shares one client key
        self.windows_like = windows_like
        # faults a VM can have (isolated targets only: they live in the target's own mount namespace)
        self.tmp_size = tmp_size  # /tmp is a tmpfs of this size ("256k"): a disk that fills up
        self.sudo_asks_password = sudo_asks_password  # the real sudo, whose sudoers wants the user's password
        self.sudo_nopasswd = sudo_nopasswd  # the real sudo, passwordless (as Azure's admin user and AIB's build user)
        self.login_shell = login_shell  # the login user's shell in the target's /etc/passwd (one that is missing)
        self.missing_programs = missing_programs  # paths under /usr/bin (/bin) that do not exist on the target
        if (tmp_size or sudo_asks_password or sudo_nopasswd or login_shell or missing_programs) and not self.isolated:
            raise ValueError("faults of the target's files need an isolated target (root)")
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self.shims = self.dir / "shims"
        self.tmp = self.dir / "tmp"  # the target's /tmp when isolated
        self.boot_id_file = self.dir / "boot_id"
        self.boot_time_file = self.dir / "boot_time"  # what a windows_like target answers for LastBootUpTime
        self.winroot = self.dir / "winroot"  # a windows_like target's drives: winroot/c: (and C: -> c:)
        self.system_state = self.dir / "system.state"  # "stopping" from a power shim's request to the next boot
        self.power_request = self.dir / "power.request"
        self.proc: subprocess.Popen[bytes] | None = None
        self.boot_count = 0
        self.timeline: list[tuple[float, str]] = []  # (time.time(), "down", "blackhole", "refusing", "up")
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ setup
    def prepare(self) -> SshTarget:
        if IS_ROOT:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
            ensure_test_user(self.user)
        os.chmod(self.dir, 0o755)
        keygen(self.host_key)
        keygen(self.client_key)
        shutil.copytree(SHIMS, self.shims, symlinks=True)
        if self.windows_like:
            shutil.copytree(WINDOWS_SHIMS, self.shims, dirs_exist_ok=True)
            for folder in ("c:", "c:/Windows", "c:/Windows/Temp"):
                (self.winroot / folder).mkdir(parents=True, exist_ok=True)
                (self.winroot / folder).chmod(0o1777)
            self.winroot.chmod(0o755)
            if not (self.winroot / "C:").exists():
                (self.winroot / "C:").symlink_to("c:")
            (self.dir / "windows.log").write_text("")  # what the powershell.exe shim did
            (self.dir / "windows.log").chmod(0o666)
        if self.sudo_asks_password or self.sudo_nopasswd:
            (self.shims / "sudo").unlink()  # the real sudo, with sudoers that want a password (or not)
            tag = "NOPASSWD: " if self.sudo_nopasswd else ""
            (self.dir / "sudoers").write_text(f"Defaults !lecture\n{self.user} ALL=(ALL:ALL) {tag}ALL\n")
            (self.dir / "sudoers").chmod(0o440)
        if self.login_shell:
            passwd = Path("/etc/passwd").read_text().splitlines()
            (self.dir / "passwd").write_text(
                "".join(
                    (":".join([*line.split(":")[:6], self.login_shell]) if line.startswith(f"{self.user}:") else line)
                    + "\n"
                    for line in passwd
                )
            )
            (self.dir / "passwd").chmod(0o644)
        for shim in self.shims.iterdir():
            if not shim.is_symlink():
                shim.chmod(0o755)
        self.tmp.mkdir(mode=0o1777, exist_ok=True)
        self.tmp.chmod(0o1777)
        self.power_request.write_text("")
        self.power_request.chmod(0o666)
        self.system_state.write_text("running\n")
        self.system_state.chmod(0o666)
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        authorized.chmod(0o644)
        self._write_config()
        return self

    def _write_config(self) -> None:
        authorized = self.dir / "authorized_keys"
        self.known_hosts.write_text(self.known_hosts_line() + "\n")
        self.config.write_text(
            # the first occurrence of a keyword wins: overrides go first
            f"{self.config_overrides}\n"
            f"Port {self.port}\n"
            f"ListenAddress {self.host}\n"
            f"HostKey {self.host_key}\n"
            "PidFile none\n"
            f"AuthorizedKeysFile {authorized}\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PubkeyAuthentication yes\n"
            f"PasswordAuthentication {'yes' if self.password else 'no'}\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin no\n"
            f"AllowUsers {self.user}\n"
            "UseDNS no\n"
            "MaxStartups 200:30:400\n"
            "MaxSessions 64\n"
            "Subsystem sftp internal-sftp\n"
            f"SetEnv PATH={self.shims}:/usr/local/bin:/usr/bin:/bin AIBX_CTL_DIR={self.dir}\n"
            "LogLevel VERBOSE\n" + (f"ForceCommand {self.shims}/windows-shell\n" if self.windows_like else "")
        )

    def known_hosts_line(self) -> str:
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {Path(f'{self.host_key}.pub').read_text().strip()}"

    def command(self) -> list[str]:
        sshd = find_program("sshd") or "/usr/sbin/sshd"
        cmd = [sshd, "-D", "-e", "-f", str(self.config)]
        if not self.isolated:
            return cmd
        d = self.dir
        faults = ""
        if self.tmp_size:
            faults += f"mount -t tmpfs -o size={self.tmp_size},mode=1777 tmpfs {d}/tmp && "
        if self.sudo_asks_password or self.sudo_nopasswd:
            faults += f"mount --bind {d}/sudoers /etc/sudoers && "
        if self.login_shell:
            faults += f"mount --bind {d}/passwd /etc/passwd && "
        if self.missing_programs:  # an overlay on /usr/bin whose upper layer (a tmpfs) holds whiteouts for them
            o = f"{d}/usr-bin-overlay"
            faults += (
                f"mkdir -p {o} && mount -t tmpfs tmpfs {o} && mkdir {o}/upper {o}/work && mount -t overlay overlay "
                f"-o lowerdir=/usr/bin,upperdir={o}/upper,workdir={o}/work /usr/bin && "
                f"rm -f {' '.join(shlex.quote(p) for p in self.missing_programs)} && "
            )
        inner = (
            f"{faults}"
            f"mount --bind {d}/tmp /tmp && "
            f"mount --bind {d}/boot_id /proc/sys/kernel/random/boot_id && "
            f"mount --bind {self.shims}/power /usr/bin/systemctl && "
            f"exec {' '.join(cmd)}"
        )
        return [
            "unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--propagation", "private",
            "--", "/bin/sh", "-c", inner,
        ]  # fmt: skip

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0, *, new_boot: bool = True) -> SshTarget:
        for _ in range(5):
            try:
                return self._start(timeout, new_boot)
            except _PortTaken:
                # the kernel handed the port out again between free_port() and sshd's bind (tests run in
                # parallel on this machine): before the first boot, any other port will do
                if self.boot_count or not self.port_chosen:
                    raise RuntimeError(f"sshd {self.name}: port {self.port} is taken") from None
                self.port = free_port(self.host)
                self._write_config()
        raise RuntimeError(f"sshd {self.name}: no free port after 5 tries")

    def _start(self, timeout: float, new_boot: bool) -> SshTarget:
        if new_boot or not self.boot_id_file.exists():
            # rewritten in place: the bind mount of an isolated target follows the file's inode
            with open(self.boot_id_file, "w") as f:
                f.write(f"{os.urandom(16).hex()}\n")
            moment = time.time() + self.boot_count  # distinct even for two boots within one second
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1e7):07d}Z"
            self.boot_time_file.write_text(stamp + "\r\n")
            self.system_state.write_text("running\n")
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while b"Server listening on" not in self.log.read_bytes()[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = self.log.read_bytes()[offset:].decode(errors="replace")[-2000:]
                if "Address already in use" in tail:
                    raise _PortTaken()
                raise RuntimeError(f"sshd {self.name} did not start:\n{tail}")
            time.sleep(0.005)
        wait_banner(self.host, self.port, timeout)
        self.timeline.append((time.time(), "up"))
        if new_boot:
            self.boot_count += 1
        return self

    def kill(self) -> None:
        """Power cut: every process of the target dies at once (safe to call from several threads)."""
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        if self.proc is None:
            return
        victims = descendants(self.proc.pid)
        if not self.isolated:  # isolated: --kill-child takes the whole pid namespace down
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 5
        for pid in victims:
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.005)
        self.proc = None
        self.timeline.append((time.time(), "down"))

    # ------------------------------------------------------------------------------------------ simulated reboots
    def reboot(
        self, down_s: float = 1.0, refused_s: float = 0.5, blackhole: bool = True, terminate_first: float = 0.0
    ) -> None:
        """A reboot as a client sees it on loopback: every session closes (the target dies at once), connection
        attempts time out for ``down_s`` (the port is blackholed), are refused for ``refused_s``, then sshd is
        back with the same host key (and a new boot id when isolated). ``terminate_first``: as a shutdown
        starts, the commands get SIGTERM that many seconds before everything dies, so sshd reports their exit
        code (143) before the connection drops."""
        if terminate_first:
            self.terminate_commands()
            time.sleep(terminate_first)
        self.kill()
        if down_s:
            hole = PortBlackhole(self.host, self.port) if blackhole else None
            self.timeline.append((time.time(), "blackhole"))
            time.sleep(down_s)
            if hole is not None:
                hole.close()
        self.timeline.append((time.time(), "refusing"))
        time.sleep(refused_s)
        self.start()

    def terminate_commands(self, include_sshd: bool = False) -> None:
        """SIGTERM to the commands running on the target (and to sshd itself with ``include_sshd``), as a
        shutdown starts."""
        if self.proc is None:
            return
        self.timeline.append((time.time(), "terminating"))
        for pid in descendants(self.proc.pid):
            try:
                is_sshd = Path(f"/proc/{pid}/comm").read_text().strip().startswith("sshd")
            except OSError:
                continue
            if include_sshd or not is_sshd:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def restart_sshd(self, down_s: float = 0.3) -> None:
        """Every connection drops and sshd comes back, but the "VM" did not reboot: the boot id stays."""
        self.kill()
        time.sleep(down_s)
        self.start(new_boot=False)

    def power_off(self) -> None:
        self.kill()

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshTarget:
        return self.prepare().start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # ------------------------------------------------------------------------------------------ what tests use
    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    @property
    def boot_id(self) -> str:
        """What the target answers for /proc/sys/kernel/random/boot_id."""
        if self.isolated:
            return self.boot_id_file.read_text().strip()
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()

    def host_path(self, remote_path: str) -> Path:
        """The test machine's path of a file the target sees at ``remote_path``."""
        if self.isolated and (remote_path == "/tmp" or remote_path.startswith("/tmp/")):
            if self.tmp_size:  # a tmpfs only the target's mount namespace sees: through its process's root
                assert self.proc is not None, "the target is not running"
                return Path(f"/proc/{self.proc.pid}/root/tmp") / remote_path[len("/tmp/") :]
            return self.tmp / remote_path[len("/tmp/") :]
        return Path(remote_path)

    def remote_dir(self, name: str) -> str:
        """A fresh directory under the target's /tmp that the login user owns; returns its remote path."""
        remote = f"/tmp/{name}-{os.urandom(4).hex()}"
        local = self.host_path(remote)
        local.mkdir(mode=0o755)
        if IS_ROOT:
            entry = pwd.getpwnam(self.user)
            os.chown(local, entry.pw_uid, entry.pw_gid)
        return remote

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def sessions_started(self) -> list[str]:
        """sshd's "Starting session" lines: one per command, shell or subsystem a client got to run."""
        return [line for line in self.log_text().splitlines() if "Starting session:" in line]

    def ssh_args(self, *extra: str) -> list[str]:
        """Arguments for OpenSSH's ssh, key auth, host key checked strictly."""
        return [
            "-i", str(self.client_key), "-p", str(self.port), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", *extra, f"{self.user}@{self.host}",
        ]  # fmt: skip
