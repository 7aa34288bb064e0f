"""A real Linux VM for the slow tests: Debian's kernel under QEMU (software emulation), with busybox, the host's
OpenSSH sshd and bash, on a disk that survives reboots.

The image is an initramfs built from Debian packages already on the machine or in its package registry (nothing
else is downloaded): the kernel comes from the current ``linux-image-*-amd64`` package (``apt-get download``), the
user space from ``busybox-static`` and the host's ``/usr/sbin/sshd`` and ``/bin/bash`` with their libraries. The
guest's own files (init scripts, sshd_config, users, the ``sudo``, ``shutdown``, ``systemctl`` and stand-in
``waagent`` commands) are real files under ``tests/support/qemu/``; see the README there.

On its first boot the VM copies the initramfs onto its disk (an ext4 image made by the host) and from then on runs
from the disk, so files written before a reboot are still there after it, as on a real VM; ``/tmp`` and ``/run``
are fresh on every boot. ``reboot``, ``shutdown -r now`` and ``systemctl reboot`` (as root, or as ``aibxtest``
through ``sudo``, which really escalates through a setuid busybox ``su``) restart the guest kernel, so
``/proc/sys/kernel/random/boot_id`` changes, while QEMU keeps running and the forwarded port stays the same.

Images are cached, keyed by everything that goes into them, under ``$AIBX_QEMU_CACHE`` (default: a private
directory in the system temp dir), never in the repository. Run ``python -m tests.support.qemu_vm --help`` to build,
boot or measure the VM by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest

from tests.support.requirements import find_program, missing

QEMU_FILES = Path(__file__).resolve().parent / "qemu"
GUEST_ROOTFS = QEMU_FILES / "rootfs"
GUEST_INIT = QEMU_FILES / "init"

# Bump when the way images are put together changes in a way the cache key cannot see.
IMAGE_FORMAT = 1
CACHE_ENV = "AIBX_QEMU_CACHE"
# https://bford.info/cachedir/: marks the directory as ours, and as a cache that backups can skip
CACHEDIR_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# aibx QEMU test VM images (tests/support/qemu_vm.py)\n"
UNUSED_IMAGE_LIFETIME_S = 2 * 24 * 3600

KERNEL_METAPACKAGE = "linux-image-amd64"
# Kernel modules the VM needs (their dependencies are added from the modules' own metadata): the virtio PCI
# transport, the network card QEMU's user-mode network is attached to, the disk with its ext4 file system, and
# the crc32c driver ext4's metadata checksums ask the crypto API for at mount time (no modprobe in the guest).
GUEST_MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "crc32c_generic", "ext4")
# Host programs copied into the guest with their shared libraries (OpenSSH >= 9.8 splits sshd into several).
GUEST_PROGRAMS = ("/usr/sbin/sshd", "/usr/lib/openssh/sshd-session", "/usr/lib/openssh/sshd-auth", "/bin/bash")
BUSYBOX = "/bin/busybox"  # where the guest has it (the applets are symbolic links to it)
# What the host needs (program, Debian package). apt, dpkg and libc-bin are part of every Debian system.
HOST_REQUIREMENTS = (
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("cpio", "cpio"),
    ("mke2fs", "e2fsprogs"),
    ("ssh-keygen", "openssh-client"),
    ("sshd", "openssh-server"),
    ("apt-cache", "apt"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("ldd", "libc-bin"),
)

GUEST_USER = "aibxtest"
ROOT_USER = "root"
WAAGENT_LOG = "/var/log/waagent-calls.log"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

BOOTED_MARKER = "AIBX-VM-BOOTED"  # printed by rcS, with the boot id, just before sshd starts
SSHD_LISTENING = "Server listening on"
GOING_DOWN_MARKERS = ("AIBX-VM-SHUTDOWN", "reboot: Restarting system", "reboot: Power down")
BANNER_TIMEOUT_S = 3.0
SSH_ATTEMPT_TIMEOUT_S = 15.0
FATAL_MARKERS = ("AIBX-VM-FATAL", "Kernel panic")

T = TypeVar("T")


class QemuUnavailable(Exception):
    """Something the VM needs is missing on this machine (a program, a Debian package, the package lists)."""


class VmError(Exception):
    """The VM did not start, boot or answer as expected. The message includes the serial console's tail."""


# --------------------------------------------------------------------------------------------------------------
# The cache


def cache_dir() -> Path:
    """The image cache: ``$AIBX_QEMU_CACHE``, or ``<temp dir>/aibx-qemu-cache-<uid>`` (private to the user).

    A directory that already holds other things (no CACHEDIR.TAG of ours) is refused rather than written into.
    """
    configured = os.environ.get(CACHE_ENV)
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / f"aibx-qemu-cache-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid():
        raise VmError(f"{path} is not a directory owned by this user; set {CACHE_ENV} to a directory of your own")
    tag = path / "CACHEDIR.TAG"
    if not tag.exists():
        if any(path.iterdir()):
            raise VmError(f"{path} is not empty and not an aibx QEMU cache; set {CACHE_ENV} to a new directory")
        tag.write_text(CACHEDIR_TAG)
    return path


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise builds in one cache between concurrent test sessions."""
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _program(name: str, package: str) -> str:
    found = find_program(name)
    if found is None:
        raise QemuUnavailable(f"{name} not found; install the Debian package {package}")
    return found


def check_host() -> None:
    """Raise QemuUnavailable naming every missing program and its Debian package."""
    missing = []
    for name, package in HOST_REQUIREMENTS:
        try:
            _program(name, package)
        except QemuUnavailable:
            missing.append(f"{name} (Debian package {package})")
    if missing:
        raise QemuUnavailable(f"the QEMU test VM needs {', '.join(missing)}")


def _run(argv: list[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise VmError(f"{what} failed (exit {result.returncode}): {' / '.join(detail)}")
    return result


# --------------------------------------------------------------------------------------------------------------
# The kernel: Debian's package, its vmlinuz and the modules the VM needs


@dataclasses.dataclass(frozen=True)
class Kernel:
    package: str  # e.g. "linux-image-6.1.0-56-amd64_6.1.192-2"
    release: str  # e.g. "6.1.0-56-amd64"
    image: Path  # vmlinux (uncompressed, booted through its PVH entry point) or, failing that, the vmlinuz
    modules: tuple[Path, ...]  # in load order


def current_kernel_package() -> tuple[str, str]:
    """(name, version) of the kernel package ``linux-image-amd64`` currently points at, from the package lists."""
    apt_cache = _program("apt-cache", "apt")
    show = [apt_cache, "show", "--no-all-versions", KERNEL_METAPACKAGE]
    record = subprocess.run(show, capture_output=True, text=True, check=False).stdout
    # One call (apt-cache takes about half a second): the metapackage pins the exact version it depends on.
    match = re.search(r"^Depends:.*?\b(linux-image-\S+-amd64) \(= ([^)\s]+)\)", record, re.MULTILINE)
    if match is None:
        raise QemuUnavailable(f"apt-cache knows no {KERNEL_METAPACKAGE}; run apt-get update")
    return match.group(1), match.group(2)


def _module_name(member: str) -> str:
    base = member.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def _module_dependencies(data: bytes) -> list[str]:
    """The ``depends=`` entry of a module's .modinfo section."""
    match = re.search(rb"\x00depends=([^\x00]*)\x00", data)
    if match is None or not match.group(1):
        return []
    return [name.replace("-", "_") for name in match.group(1).decode().split(",")]


def _module_bytes(member_name: str, data: bytes) -> bytes:
    if member_name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if member_name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if member_name.endswith(".ko"):
        return data
    raise VmError(f"cannot unpack kernel module {member_name} (unknown compression)")


def _kernel_package_members(deb: Path) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Stream the file system tar of a .deb (dpkg-deb decompresses it); yields regular files."""
    dpkg_deb = _program("dpkg-deb", "dpkg")
    with subprocess.Popen([dpkg_deb, "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile():
                    yield member, archive
        if proc.wait() != 0:
            raise VmError(f"dpkg-deb --fsys-tarfile {deb} failed")


def _extract_kernel(deb: Path, target: Path) -> None:
    """Write vmlinuz, the needed modules (uncompressed) and their load order into target."""
    module_re = re.compile(r"^\./(?:usr/)?lib/modules/([^/]+)/kernel/.+\.ko(?:\.[a-z]+)?$")
    dependencies: dict[str, list[str]] = {}
    builtin: set[str] = set()
    release = None
    # Pass 1: every module's dependencies, and what is built into the kernel.
    for member, archive in _kernel_package_members(deb):
        match = module_re.match(member.name)
        if match:
            release = match.group(1)
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            dependencies[_module_name(member.name)] = _module_dependencies(_module_bytes(member.name, data))
        elif member.name.endswith("/modules.builtin"):
            text = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            builtin = {_module_name(line) for line in text.split()}
    if release is None:
        raise VmError(f"{deb.name} contains no kernel modules")

    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order or name in builtin:
            return
        if name not in dependencies:
            raise VmError(f"kernel module {name} (needed by {' <- '.join(chain) or 'the VM'}) is not in {deb.name}")
        for dependency in dependencies[name]:
            visit(dependency, (name, *chain))
        order.append(name)

    for wanted in GUEST_MODULES:
        visit(wanted, ())

    # Pass 2: the kernel image and the modules in the closure.
    modules_dir = target / "modules"
    modules_dir.mkdir(parents=True)
    for member, archive in _kernel_package_members(deb):
        if member.name == f"./boot/vmlinuz-{release}":
            (target / "vmlinuz").write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
        elif module_re.match(member.name) and _module_name(member.name) in order:
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            (modules_dir / f"{_module_name(member.name)}.ko").write_bytes(_module_bytes(member.name, data))
    if not (target / "vmlinuz").exists():
        raise VmError(f"{deb.name} has no boot/vmlinuz-{release}")
    vmlinux = _uncompressed_kernel((target / "vmlinuz").read_bytes())
    if vmlinux is not None:
        (target / "vmlinux").write_bytes(vmlinux)
    (target / "load-order").write_text("".join(f"{name}\n" for name in order))
    (target / "release").write_text(release + "\n")


def _uncompressed_kernel(bzimage: bytes) -> bytes | None:
    """The ELF vmlinux inside a bzImage, if it is compressed in a way Python reads and has a PVH entry point.

    Under software emulation the kernel's own decompressor takes about 4 s of every boot; QEMU loads an ELF
    kernel with a PVH entry note directly.
    """
    setup_sectors = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)  # boot protocol >= 2.08
    start = (setup_sectors + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    if payload.startswith(b"\xfd7zXZ\x00"):
        decompressor: Any = lzma.LZMADecompressor()
    elif payload.startswith(b"\x1f\x8b"):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    else:
        return None  # e.g. zstd: boot the bzImage instead
    try:
        vmlinux = decompressor.decompress(payload)
    except (lzma.LZMAError, zlib.error):
        return None
    return vmlinux if _has_pvh_entry(vmlinux) else None


def _has_pvh_entry(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF has the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) QEMU boots from."""
    if elf[:6] != b"\x7fELF\x02\x01":
        return False
    phoff, phentsize, phnum = struct.unpack_from("<Q", elf, 0x20)[0], *struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        kind, _flags, offset, _vaddr, _paddr, size = struct.unpack_from("<IIQQQQ", elf, phoff + index * phentsize)
        if kind != 4:  # PT_NOTE
            continue
        position, end = offset, offset + size
        while position + 12 <= end:
            name_size, desc_size, note_type = struct.unpack_from("<III", elf, position)
            name = elf[position + 12 : position + 12 + name_size].rstrip(b"\x00")
            if name == b"Xen" and note_type == 18:
                return True
            position += 12 + (name_size + 3) // 4 * 4 + (desc_size + 3) // 4 * 4
    return False


def fetch_kernel(cache: Path) -> Kernel:
    """Debian's current kernel, downloaded with ``apt-get download`` once and unpacked into the cache."""
    modules_key = hashlib.sha256(f"{IMAGE_FORMAT} {GUEST_MODULES}".encode()).hexdigest()[:8]
    try:
        name, version = current_kernel_package()
    except QemuUnavailable:
        # No package lists (offline, or apt-get update never ran): a kernel unpacked before still does.
        unpacked = sorted((cache / "kernels").glob(f"*-{modules_key}/load-order"), key=lambda p: p.stat().st_mtime)
        if not unpacked:
            raise
        return _load_kernel(unpacked[-1].parent)
    package = f"{name}_{version.replace(':', '%3a')}"
    directory = cache / "kernels" / f"{package}-{modules_key}"
    if (directory / "load-order").exists():
        return _load_kernel(directory)
    with _locked(cache):
        if not (directory / "load-order").exists():
            apt_get = _program("apt-get", "apt")
            with tempfile.TemporaryDirectory(dir=cache, prefix="download-") as download:
                pinned = f"{name}={version}"
                _run([apt_get, "download", "-q", pinned], f"apt-get download {pinned}", cwd=download)
                debs = list(Path(download).glob(f"{name}_*.deb"))
                if len(debs) != 1:
                    raise VmError(f"apt-get download {name} left {len(debs)} .deb files")
                staging = Path(tempfile.mkdtemp(dir=cache, prefix="kernel-"))
                try:
                    _extract_kernel(debs[0], staging)
                    directory.parent.mkdir(exist_ok=True)
                    staging.rename(directory)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
    return _load_kernel(directory)


def _load_kernel(directory: Path) -> Kernel:
    order = (directory / "load-order").read_text().split()
    vmlinux = directory / "vmlinux"
    return Kernel(
        package=directory.name.rsplit("-", 1)[0],
        release=(directory / "release").read_text().strip(),
        image=vmlinux if vmlinux.exists() else directory / "vmlinuz",
        modules=tuple(directory / "modules" / f"{name}.ko" for name in order),
    )


# --------------------------------------------------------------------------------------------------------------
# The image


@dataclasses.dataclass(frozen=True)
class VmImage:
    directory: Path
    kernel: Path  # vmlinux, or vmlinuz when the kernel could not be unpacked
    initrd: Path  # newc cpio, uncompressed
    kernel_release: str
    kernel_package: str
    client_key: Path  # private key authorised for root and aibxtest
    host_key_public: str  # "ssh-ed25519 AAAA…", the same on every boot of every VM from this image

    @classmethod
    def load(cls, directory: Path) -> VmImage:
        info = json.loads((directory / "image.json").read_text())
        return cls(
            directory=directory,
            kernel=directory / info["kernel_file"],
            initrd=directory / "initrd.cpio",
            kernel_release=info["kernel_release"],
            kernel_package=info["kernel_package"],
            client_key=directory / "id_ed25519",
            host_key_public=(directory / "ssh_host_ed25519_key.pub").read_text().strip(),
        )


def _shared_libraries(program: str) -> list[str]:
    ldd = _program("ldd", "libc-bin")
    result = subprocess.run([ldd, program], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []  # busybox-static
        raise VmError(f"ldd {program} failed: {result.stderr.strip()}")
    return re.findall(r"(?:=> )?(/\S+) \(0x", result.stdout)


def _host_files() -> dict[str, str]:
    """Host files copied into the guest (guest path -> host path): busybox, the programs, the libraries they load."""
    programs = [(BUSYBOX, _program("busybox", "busybox-static"))]
    programs += [(program, program) for program in GUEST_PROGRAMS if os.path.exists(program)]
    files: dict[str, str] = {}
    for guest_path, host_path in programs:
        files[guest_path] = host_path
        for library in _shared_libraries(host_path):
            files.setdefault(library, library)
    return files


def _cache_key(kernel: Kernel, host_files: dict[str, str]) -> str:
    digest = hashlib.sha256(f"format {IMAGE_FORMAT}\nkernel {kernel.package}\n".encode())
    digest.update(Path(__file__).read_bytes())
    guest_files = [GUEST_INIT, *sorted(p for p in GUEST_ROOTFS.rglob("*") if p.is_file())]
    for path in guest_files:
        digest.update(f"{path.relative_to(QEMU_FILES)} {path.stat().st_mode & 0o777:o}\n".encode())
        digest.update(path.read_bytes())
    for guest_path, host_path in sorted(host_files.items()):
        digest.update(f"{guest_path} {host_path}\n".encode())
        digest.update(Path(host_path).read_bytes())
    return digest.hexdigest()[:20]


def _stage_root(stage: Path, kernel: Kernel, host_files: dict[str, str], keys: Path) -> None:
    """Lay out the guest's root file system in stage (owners are set to root by cpio; see init for aibxtest)."""
    # The host's merged-/usr layout (/bin -> usr/bin, ...), so library paths from ldd resolve the same way.
    for name in ("bin", "sbin", "lib", "lib64"):
        (stage / "usr" / name).mkdir(parents=True, exist_ok=True)
        if os.path.islink(f"/{name}"):
            (stage / name).symlink_to(os.readlink(f"/{name}"))
    for directory in ("dev", "proc", "sys", "run", "tmp", "newroot", "root/.ssh", "home/aibxtest/.ssh", "var/log",
                      "var/empty", "usr/lib/aibx", "lib/modules", "etc/ssh"):  # fmt: skip
        (stage / directory).mkdir(parents=True, exist_ok=True)
    os.chmod(stage / "tmp", 0o1777)
    for path in (stage / "root", stage / "root/.ssh", stage / "home/aibxtest/.ssh"):
        os.chmod(path, 0o700)

    for source in sorted(GUEST_ROOTFS.rglob("*")):
        if source.is_file():
            target = stage / source.relative_to(GUEST_ROOTFS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shutil.copy2(GUEST_INIT, stage / "init")
    os.chmod(stage / "init", 0o755)
    os.chmod(stage / "etc/shadow", 0o600)

    for guest_path, host_path in host_files.items():
        target = stage / guest_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(host_path, target)  # follows symlinks: the guest gets the file under the name ld.so asks for
    shutil.copy2(host_files[BUSYBOX], stage / "usr/lib/aibx/su")
    os.chmod(stage / "usr/lib/aibx/su", 0o4755)  # setuid root: busybox keeps root only for su
    applets = _run([host_files[BUSYBOX], "--list-full"], "busybox --list-full").stdout.split()
    for applet in applets:
        link = stage / applet
        if not os.path.lexists(link):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(BUSYBOX)

    for module in kernel.modules:
        shutil.copy2(module, stage / "lib/modules" / module.name)
    (stage / "lib/modules/load-order").write_text("".join(f"{m.stem}\n" for m in kernel.modules))

    shutil.copy2(keys / "ssh_host_ed25519_key", stage / "etc/ssh/ssh_host_ed25519_key")
    shutil.copy2(keys / "ssh_host_ed25519_key.pub", stage / "etc/ssh/ssh_host_ed25519_key.pub")
    os.chmod(stage / "etc/ssh/ssh_host_ed25519_key", 0o600)
    for home in ("root", "home/aibxtest"):
        authorized = stage / home / ".ssh/authorized_keys"
        shutil.copy2(keys / "id_ed25519.pub", authorized)
        os.chmod(authorized, 0o600)


def _write_initrd(stage: Path, initrd: Path) -> None:
    cpio = _program("cpio", "cpio")
    paths = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
    with open(initrd, "wb") as out:
        result = subprocess.run(
            [cpio, "--create", "--format=newc", "--owner=0:0", "--quiet"],
            input="\n".join(paths).encode(),
            stdout=out,
            stderr=subprocess.PIPE,
            cwd=stage,
            check=False,
        )
    if result.returncode != 0:
        raise VmError(f"cpio failed: {result.stderr.decode().strip()}")


def build_image(cache: Path | None = None) -> VmImage:
    """The VM image for the current kernel package and host programs: from the cache, or built (a few seconds)."""
    cache = cache or cache_dir()
    check_host()
    kernel = fetch_kernel(cache)
    host_files = _host_files()
    directory = cache / "images" / _cache_key(kernel, host_files)
    if not (directory / "image.json").exists():
        with _locked(cache):
            if not (directory / "image.json").exists():
                _build_image(kernel, host_files, directory)
    (directory / "image.json").touch()  # "last used", for pruning
    _prune_unused_images(cache, keep=directory)
    return VmImage.load(directory)


def _build_image(kernel: Kernel, host_files: dict[str, str], directory: Path) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=directory.parent, prefix="building-"))
    try:
        keygen = _program("ssh-keygen", "openssh-client")
        for key, comment in (("ssh_host_ed25519_key", "aibx-test-vm"), ("id_ed25519", "aibx test client")):
            _run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(building / key)], "ssh-keygen")
        stage = building / "root"
        stage.mkdir()
        _stage_root(stage, kernel, host_files, building)
        _write_initrd(stage, building / "initrd.cpio")
        shutil.rmtree(stage)
        try:
            os.link(kernel.image, building / kernel.image.name)
        except OSError:
            shutil.copy2(kernel.image, building / kernel.image.name)
        info = {
            "kernel_package": kernel.package,
            "kernel_release": kernel.release,
            "kernel_file": kernel.image.name,
            "format": IMAGE_FORMAT,
        }
        (building / "image.json").write_text(json.dumps(info, indent=2) + "\n")
        building.rename(directory)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _prune_unused_images(cache: Path, keep: Path) -> None:
    """Drop images nobody used for two days (other worktrees may share the cache: recent ones stay)."""
    now = time.time()
    for info in (cache / "images").glob("*/image.json"):
        if info.parent != keep and now - info.stat().st_mtime > UNUSED_IMAGE_LIFETIME_S:
            shutil.rmtree(info.parent, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# QMP, QEMU's machine protocol (JSON lines over a Unix socket): only what the VM needs


class _Qmp:
    def __init__(self, path: Path, timeout: float) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout)
        self._socket.connect(str(path))
        self._reader = self._socket.makefile("rb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._reader.readline()
        if not line:
            raise VmError("QEMU closed its QMP socket")
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._socket.sendall(json.dumps(request).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise VmError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
            # anything else is an asynchronous event: not needed here

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._reader.close()
            self._socket.close()


# --------------------------------------------------------------------------------------------------------------
# The VM


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn for QEMU: PR_SET_PDEATHSIG, so the VM dies with the test process even on SIGKILL.

    The C function is looked up here, before the fork: the child only calls it (no dlopen between fork and exec).
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGKILL)


def _qemu_option_value(path: Path) -> str:
    return str(path).replace(",", ",,")  # QEMU's escape for commas inside option values


def _run_blocking(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, even when the caller is itself inside an event loop."""

    async def main() -> T:
        return await make_coroutine()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    result: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=worker, name="qemu-vm-blocking")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class QemuVm:
    """One VM: a QEMU process (TCG), its disk, serial console log and QMP socket in ``run_dir``.

    SSH: ``host``:``port`` (a kernel-assigned loopback port forwarded by QEMU to the guest's port 22), users
    ``aibxtest`` (``user``) and ``root``, key ``client_key``, host key pinned in ``known_hosts`` (OpenSSH format,
    ``[127.0.0.1]:PORT ssh-ed25519 …``). ``ssh_options()`` gives the keyword arguments for ``asyncssh.connect``.
    """

    host = "127.0.0.1"
    user = GUEST_USER
    root_user = ROOT_USER
    waagent_log = WAAGENT_LOG

    def __init__(
        self,
        image: VmImage,
        run_dir: Path,
        *,
        memory_mib: int = 256,
        cpus: int = 2,
        disk_mib: int = 512,
        tmp_cleared_at_boot: bool = True,
    ):
        """``tmp_cleared_at_boot=False`` keeps /tmp on the disk, so its files survive reboots (older Debian);
        by default it is a fresh tmpfs on every boot (Ubuntu clears /tmp at boot, Debian 13 uses a tmpfs)."""
        self.image = image
        self.tmp_cleared_at_boot = tmp_cleared_at_boot
        self.run_dir = run_dir
        self.memory_mib = memory_mib
        self.cpus = cpus
        self.disk_mib = disk_mib
        self.client_key = image.client_key
        self.known_hosts = run_dir / "known_hosts"
        self.console_log = run_dir / "console.log"
        self.qemu_log = run_dir / "qemu.log"
        self.disk = run_dir / "disk.img"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._broken: VmError | None = None
        self._console_offset = 0  # where the running QEMU process's part of the console log starts
        # AF_UNIX paths are limited to 107 bytes: a deep run dir gets its socket in a short temporary directory.
        self._socket_dir = run_dir if len(str(run_dir / "qmp.sock")) < 100 else Path(tempfile.mkdtemp(prefix="aibx-"))
        self._qmp_path = self._socket_dir / "qmp.sock"

    # -- lifecycle -------------------------------------------------------------------------------------------

    def command_line(self) -> list[str]:
        qemu = _program("qemu-system-x86_64", "qemu-system-x86")
        return [
            qemu,
            "-name", "aibx-test-vm",
            "-machine", "pc",
            "-accel", "tcg,tb-size=64",  # MiB of translated code: a third less memory, no slower here
            "-cpu", "max",
            "-smp", str(self.cpus),
            "-m", str(self.memory_mib),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", _qemu_option_value(self.image.kernel),
            "-initrd", _qemu_option_value(self.image.initrd),
            "-append", "console=ttyS0 quiet panic=0" + ("" if self.tmp_cleared_at_boot else " aibx.tmp=disk"),
            # appended to, so the log (and boot_count) covers every boot of this VM, across QEMU restarts too
            "-chardev", f"file,id=console,path={_qemu_option_value(self.console_log)},append=on",
            "-serial", "chardev:console",
            "-drive", f"file={_qemu_option_value(self.disk)},format=raw,if=virtio",
            "-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22",
            "-device", "virtio-net-pci,netdev=net0",
            "-qmp", f"unix:{_qemu_option_value(self._qmp_path)},server=on,wait=off",
        ]  # fmt: skip

    def start(self) -> None:
        """Start QEMU (the guest then boots on its own; see ``wait_until_ready``). Creates the disk on first use.

        Call it from a thread that lives as long as the VM should: QEMU is killed when that thread ends.
        """
        if self.running:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.disk.exists():
            mke2fs = _program("mke2fs", "e2fsprogs")
            with open(self.disk, "wb") as disk:
                disk.truncate(self.disk_mib * 1024 * 1024)
            _run([mke2fs, "-q", "-t", "ext4", "-L", "aibx-root", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                  str(self.disk)], "mke2fs")  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            self._qmp_path.unlink()
        self._console_offset = self.console_log.stat().st_size if self.console_log.exists() else 0
        with open(self.qemu_log, "ab") as log:
            self._process = subprocess.Popen(
                self.command_line(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole in stop()
                preexec_fn=_die_with_parent(),
            )
        try:
            self.port = self._forwarded_port()
        except BaseException:
            self.stop()
            raise
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {self.image.host_key_public}\n")

    def _forwarded_port(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            if self._process is None or self._process.poll() is not None:
                raise VmError(f"QEMU exited at start:\n{self._tail(self.qemu_log)}")
            try:
                qmp = _Qmp(self._qmp_path, timeout=10.0)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise VmError(f"QEMU did not open its QMP socket within {timeout:.0f}s") from None
                time.sleep(0.02)
            except OSError as exc:
                raise VmError(f"cannot talk to QEMU over QMP: {exc}\n{self._tail(self.qemu_log)}") from exc
        try:
            table = qmp.execute("human-monitor-command", **{"command-line": "info usernet"})
        finally:
            qmp.close()
        match = re.search(r"HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s", table)
        if match is None:
            raise VmError(f"no forwarded port in QEMU's 'info usernet':\n{table}")
        return int(match.group(1))

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop QEMU (QMP quit, then SIGTERM, then SIGKILL to its process group). Safe to call more than once."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(OSError, VmError, ValueError):
                qmp = _Qmp(self._qmp_path, timeout=2.0)
                with contextlib.suppress(OSError, VmError, ValueError):
                    qmp.execute("quit")
                qmp.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout / 2)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:  # reaped: its process group id may already belong to someone else
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout / 2)
        process.wait()

    def close(self) -> None:
        """Stop the VM (the run dir, with disk and logs, stays: it is the caller's)."""
        self.stop()
        if self._socket_dir != self.run_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> QemuVm:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what the host can see without SSH -------------------------------------------------------------------

    @staticmethod
    def _tail(path: Path, lines: int = 40) -> str:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return "(empty)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    def console_tail(self, lines: int = 40) -> str:
        """The last lines of the guest's serial console (kernel messages, init, sshd's log)."""
        return self._tail(self.console_log, lines)

    def _console_boots(self, since_start: bool = False) -> list[tuple[str, str]]:
        """(boot id, console output since) for every boot that got as far as starting sshd, oldest first; only
        those of the running QEMU process if ``since_start``."""
        try:
            with open(self.console_log, "rb") as console_file:
                console_file.seek(self._console_offset if since_start else 0)
                console = console_file.read().decode(errors="replace")
        except FileNotFoundError:
            return []
        parts = re.split(rf"^{BOOTED_MARKER} boot_id=(\S+).*$", console, flags=re.MULTILINE)
        return list(zip(parts[1::2], parts[2::2], strict=True))

    def console_boot_ids(self) -> list[str]:
        """The boot id of every boot that got as far as starting sshd, oldest first, from the serial console."""
        return [boot_id for boot_id, _ in self._console_boots()]

    def _console_problem(self, not_boot_id: str | None = None) -> str | None:
        """Why, judging by the serial console, SSH cannot work right now; None if the guest's sshd is listening
        (on a boot other than ``not_boot_id``)."""
        boots = self._console_boots(since_start=True)
        if not boots:
            return "the guest is still booting"
        boot_id, since = boots[-1]
        if boot_id == not_boot_id:
            return "the guest has not rebooted yet"
        if any(marker in since for marker in GOING_DOWN_MARKERS):
            return "the guest is going down"
        if SSHD_LISTENING not in since:
            return "the guest has booted; its sshd is not listening yet"
        return None

    def boot_count(self) -> int:
        """How many times the guest has booted (QEMU started it, or it rebooted) far enough to start sshd."""
        return len(self.console_boot_ids())

    def memory_rss(self) -> tuple[int, int]:
        """(current, peak) resident set size of the QEMU process, in bytes."""
        if self._process is None:
            raise VmError("the VM is not running")
        status = Path(f"/proc/{self._process.pid}/status").read_text()
        current = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        return current * 1024, peak * 1024

    def _failure(self, message: str) -> VmError:
        return VmError(f"{message}\n--- serial console (last lines) ---\n{self.console_tail()}")

    def _check_alive(self) -> None:
        if not self.running:
            raise self._failure(f"QEMU exited (status {self._process.returncode if self._process else None})")
        tail = self.console_tail(20)
        for marker in FATAL_MARKERS:
            if marker in tail:
                raise self._failure(f"the guest failed to boot ({marker})")

    # -- SSH -------------------------------------------------------------------------------------------------

    def ssh_target(self, user: str | None = None) -> str:
        """``aibxtest@127.0.0.1:PORT`` (or another user)."""
        return f"{user or self.user}@{self.host}:{self.port}"

    def ssh_command(self, user: str | None = None) -> list[str]:
        """An OpenSSH client command line for this VM (host key checked strictly), for debugging by hand."""
        return ["ssh", "-p", str(self.port), "-i", str(self.client_key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                f"{user or self.user}@{self.host}"]  # fmt: skip

    def ssh_options(self, user: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``asyncssh.connect``: this VM, its key, host key checked against known_hosts."""
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": user or self.user,
            "client_keys": [str(self.client_key)],
            "known_hosts": str(self.known_hosts),
            "agent_path": None,
            "config": [],
            "connect_timeout": 10,
        }
        options.update(overrides)
        return options

    async def connect(self, user: str | None = None, **overrides: Any) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(**self.ssh_options(user, **overrides))

    async def boot_id(self, user: str | None = None) -> str:
        async with await self.connect(user) as connection:
            result = await connection.run(f"cat {BOOT_ID_PATH}", check=True, timeout=30)
        return str(result.stdout).strip()

    async def wait_for_ssh(
        self, timeout: float = 120.0, *, user: str | None = None, not_boot_id: str | None = None
    ) -> str:
        """Wait until ``user`` can log in and read the boot id (different from ``not_boot_id`` if given).

        Returns the boot id. Raises VmError with the last SSH error and the serial console's tail on timeout,
        and at once if QEMU exits, the guest panics, or the host key or the client key is refused.
        """
        deadline = time.monotonic() + timeout
        last_error = "no attempt yet"
        while True:
            self._check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"no SSH to the VM at {self.host}:{self.port} within {timeout:.0f}s; "
                                    f"last error: {last_error}")  # fmt: skip
            # QEMU accepts connections on the forwarded port even while the guest is down, and an SSH handshake
            # begun then hangs: first let the serial console say that the expected boot's sshd is listening.
            console_problem = self._console_problem(not_boot_id)
            if console_problem:
                last_error = console_problem
                await asyncio.sleep(0.1)
                continue
            try:
                attempt_timeout = max(1.0, min(SSH_ATTEMPT_TIMEOUT_S, deadline - time.monotonic()))
                options = self.ssh_options(user, connect_timeout=attempt_timeout, login_timeout=attempt_timeout)
                async with asyncssh.connect(**options) as connection:
                    result = await connection.run(f"cat {BOOT_ID_PATH}", check=True, timeout=attempt_timeout)
                boot_id = str(result.stdout).strip()
                if boot_id != not_boot_id:
                    return boot_id
                last_error = f"still the same boot ({boot_id})"
            except (asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied) as exc:
                raise self._failure(f"SSH to the VM refused: {exc}") from exc
            except (OSError, asyncio.TimeoutError, asyncssh.Error, asyncssh.ProcessError) as exc:
                last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            await asyncio.sleep(0.25)

    async def _banner_problem(self, timeout: float) -> str | None:
        """None if sshd's banner arrives on the forwarded port within timeout, else what happened instead."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            return f"cannot connect: {type(exc).__name__}: {exc}".rstrip(": ")
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except (OSError, asyncio.TimeoutError):
            return f"connected, but no SSH banner within {timeout:.0f}s (the guest is not up)"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not line.startswith(b"SSH-"):
            return "connected, but the guest closed the connection without an SSH banner"
        return None

    async def wait_for_new_boot(self, previous_boot_id: str, timeout: float = 120.0, user: str | None = None) -> str:
        """After a reboot: wait until SSH answers from a boot other than ``previous_boot_id``; returns the new id."""
        return await self.wait_for_ssh(timeout, user=user, not_boot_id=previous_boot_id)

    def wait_until_ready(self, timeout: float = 120.0) -> str:
        """Blocking ``wait_for_ssh``; returns the boot id."""
        return _run_blocking(lambda: self.wait_for_ssh(timeout))

    def ensure_ready(self, timeout: float = 120.0) -> None:
        """Make sure the VM answers SSH, cheaply when it does (sshd's banner is enough): start QEMU again if it
        exited (e.g. the guest powered off), restart it once if it does not answer within ``timeout``. The disk,
        and so the guest's files, are kept. After a failed restart every later call fails at once."""
        if self._broken is not None:
            raise self._broken
        if self.running and self._console_problem() is None and _run_blocking(self._sshd_banner_problem) is None:
            return
        try:
            if not self.running:
                self.start()
            try:
                self.wait_until_ready(timeout)
            except VmError:
                self.stop()
                self.start()
                self.wait_until_ready(timeout)
        except VmError as exc:
            self._broken = exc
            raise

    async def _sshd_banner_problem(self) -> str | None:
        return await self._banner_problem(BANNER_TIMEOUT_S)

    def run(
        self, command: str, *, user: str | None = None, timeout: float = 60.0, input: str | None = None
    ) -> asyncssh.SSHCompletedProcess:
        """Blocking: run one command in the guest over a fresh SSH connection (exit status not checked)."""

        async def run() -> asyncssh.SSHCompletedProcess:
            async with await self.connect(user) as connection:
                return await connection.run(command, input=input, check=False, timeout=timeout)

        return _run_blocking(run)

    def waagent_calls(self) -> list[str]:
        """The stand-in waagent's log lines: ``<UTC time> uid=<uid> sudo_user=<user or -> parent=<command line of
        its parent process, commas for spaces> <arguments>``."""
        result = self.run(f"cat {WAAGENT_LOG} 2>/dev/null || true", user=self.root_user)
        return str(result.stdout).splitlines()


# --------------------------------------------------------------------------------------------------------------
# pytest fixtures (registered by tests/conftest.py through pytest_plugins); only for @pytest.mark.slow tests


QEMU_FIXTURES = frozenset({"qemu_image", "qemu_vm", "qemu_vm_factory"})


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Keep the fast suite fast: a test using the VM must be marked slow (checked before anything boots)."""
    used = QEMU_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if used and item.get_closest_marker("slow") is None:
        pytest.fail(f"{item.name} uses {', '.join(sorted(used))}, which boots a VM: mark it @pytest.mark.slow",
                    pytrace=False)  # fmt: skip


@pytest.fixture(scope="session")
def qemu_image() -> VmImage:
    """The VM image (cached; built on first use). Skips without QEMU & co. locally, fails in CI."""
    unavailable = None
    try:
        return build_image()
    except QemuUnavailable as exc:
        unavailable = str(exc)
    missing(unavailable)  # skips, or fails in CI
    raise AssertionError("not reached")


@pytest.fixture(scope="session")
def _qemu_session_vm(qemu_image: VmImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuVm]:
    vm = QemuVm(qemu_image, tmp_path_factory.mktemp("qemu-vm"))
    try:
        vm.start()
        yield vm
    finally:
        vm.close()


@pytest.fixture
def qemu_vm(_qemu_session_vm: QemuVm) -> QemuVm:
    """The session's VM, answering SSH (restarted if an earlier test left it down). Tests share it and its disk:
    a test must not rely on a fresh guest (use ``qemu_vm_factory`` for that) nor leave it powered off."""
    _qemu_session_vm.ensure_ready()
    return _qemu_session_vm


@pytest.fixture
def qemu_vm_factory(qemu_image: VmImage, tmp_path: Path) -> Iterator[Callable[..., QemuVm]]:
    """``start(wait=True, **QemuVm options) -> QemuVm``: fresh VMs (new disk) for one test, stopped after it."""
    vms: list[QemuVm] = []

    def start(wait: bool = True, **options: Any) -> QemuVm:
        vm = QemuVm(qemu_image, tmp_path / f"vm{len(vms)}", **options)
        vms.append(vm)
        vm.start()
        if wait:
            vm.wait_until_ready()
        return vm

    try:
        yield start
    finally:
        for vm in vms:
            vm.close()


# --------------------------------------------------------------------------------------------------------------
# By hand: build, boot, measure


def _measure(args: argparse.Namespace) -> int:
    cache = cache_dir()
    started = time.monotonic()
    image = build_image(cache)
    print(f"image: {time.monotonic() - started:.2f}s ({image.directory}, kernel {image.kernel_release})")
    with tempfile.TemporaryDirectory(prefix="aibx-qemu-measure-") as run_dir, QemuVm(image, Path(run_dir)) as vm:
        started = time.monotonic()
        vm.start()
        boot_id = vm.wait_until_ready()
        print(f"QEMU start to SSH, first boot (copies the image to the new disk): {time.monotonic() - started:.2f}s")
        vm.stop()
        started = time.monotonic()
        vm.start()
        boot_id = vm.wait_until_ready()
        print(f"QEMU start to SSH, disk already populated: {time.monotonic() - started:.2f}s")
        for command in ["reboot"] * args.reboots + ["reboot -f"] * args.reboots:
            started = time.monotonic()
            _run_blocking(lambda: _start_command(vm, command))  # noqa: B023
            boot_id = _run_blocking(lambda: vm.wait_for_new_boot(boot_id))  # noqa: B023
            print(f"'{command}' (as root) to SSH on the new boot: {time.monotonic() - started:.2f}s")
        current, peak = vm.memory_rss()
        print(f"QEMU RSS: {current / 2**20:.0f} MiB (peak {peak / 2**20:.0f} MiB), guest memory {vm.memory_mib} MiB")
    return 0


async def _start_command(vm: QemuVm, command: str) -> None:
    """Start a command as root and leave without waiting for it (a reboot -f never answers)."""
    async with await vm.connect(vm.root_user) as connection:
        await connection.create_process(command)
        await asyncio.sleep(0.2)


def _serve(args: argparse.Namespace) -> int:
    image = build_image()
    run_dir = Path(tempfile.mkdtemp(prefix="aibx-qemu-vm-"))

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with QemuVm(image, run_dir) as vm, contextlib.suppress(KeyboardInterrupt):
        vm.start()
        vm.wait_until_ready()
        print(f"READY {shlex.join(vm.ssh_command())}\n(console: {vm.console_log}; Ctrl-C stops)", flush=True)
        while True:
            time.sleep(3600)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.qemu_vm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the image (or find it in the cache) and print where it is")
    measure = commands.add_parser("measure", help="build, boot, reboot and print the times and QEMU's memory")
    measure.add_argument("--reboots", type=int, default=2)
    commands.add_parser("serve", help="boot a VM and print how to ssh into it; Ctrl-C stops it")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            started = time.monotonic()
            image = build_image()
            print(f"{image.directory} (kernel {image.kernel_package}) in {time.monotonic() - started:.2f}s")
            return 0
        if args.command == "measure":
            return _measure(args)
        return _serve(args)
    except (QemuUnavailable, VmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
