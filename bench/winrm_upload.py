#!/usr/bin/env python3
"""WinRM upload throughput: aibx's transport against Packer's winrmcp method, side by side, same server.

Both talk to the WinRM protocol server of tests/support (run in a child process, on loopback) through pywinrm
over real HTTP, with the same authentication:

* aibx: ``WinRMTransport.put`` - one PowerShell process, the file streamed on its stdin as base64 lines, one
  WinRM Send per ~84 KiB of file (sized to the 150 KiB envelope), the SHA-256 checked on the VM.
* winrmcp (what Packer's WinRM communicator does, packer-community/winrmcp cp.go): base64 chunks of
  ((8000 - len(path)) / 4) * 3 bytes, each appended by its own ``echo <b64> >> "%TEMP%\\winrmcp-<id>.tmp"``
  command (Command, Receive, Signal), a new shell every 15 commands, then one PowerShell command that decodes
  the temp file into the destination.

The server emulates both commands' effect on an in-memory file system; each upload is verified by hash.

    python bench/winrm_upload.py [--sizes-mib 1 8] [--repeat 3] [--auth ntlm|basic]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "Bench-Passw0rd"
DEST = "C:\\Windows\\Temp\\bench.bin"


# ----------------------------------------------------------------------------------------------- the server
def winrmcp_echo(cmd) -> int:
    """``echo <b64> >> "<file>"``: cmd.exe appends the text and a CRLF."""
    text, _, target = cmd.command_line[len("echo ") :].partition(" >> ")
    path = target.strip().strip('"').lower()
    buffer = cmd.host.files.setdefault(path, bytearray())  # appended in place: no quadratic copying
    buffer += text.encode() + b"\r\n"
    return 0


def winrmcp_restore(cmd) -> int:
    """The restore step: decode the temp file line by line into the destination, delete the temp file."""
    import re

    src = re.search(r"\$tmp_file_path = '([^']*)'", cmd.script).group(1).lower()
    dest = re.search(r"\$dest_file_path = '([^']*)'", cmd.script).group(1).lower()
    data = bytes(cmd.host.files.pop(src, b""))
    cmd.host.files[dest] = b"".join(base64.b64decode(line) for line in data.split(b"\r\n") if line)
    return 0


def serve(conn, auth: str) -> None:
    from tests.support.winrm_server import WinRMHost

    host = WinRMHost(users={"aibx": PASSWORD}, auth=(auth,), allow_unencrypted=True)
    host.add_directory("%temp%")
    host.on(lambda c: c.command_line.startswith("echo "), winrmcp_echo)
    host.on("$tmp_file_path", winrmcp_restore)
    host.start()
    conn.send(host.port)
    while True:
        msg = conn.recv()
        if msg[0] == "sha256":
            data = host.file(msg[1])
            conn.send(hashlib.sha256(data).hexdigest() if data is not None else None)
        elif msg[0] == "requests":
            conn.send(len(host.requests))
        elif msg[0] == "reset":
            host.files.clear()
            host.requests.clear()
            host.commands.clear()
            conn.send(True)
        else:
            host.stop()
            conn.send(True)
            return


# ----------------------------------------------------------------------------------------------- the clients
def upload_aibx(port: int, auth: str, data: bytes) -> None:
    from aibx.engine.transports import parse_target
    from aibx.engine.transports.winrm import WinRMOptions, WinRMTransport

    async def go() -> None:
        t = WinRMTransport(
            parse_target(f"winrm://aibx@127.0.0.1:{port}"),
            WinRMOptions(auth=auth, allow_unencrypted=True),
            password=PASSWORD,
        )
        await t.connect()
        await t.put(data, DEST)
        await t.close()

    asyncio.run(go())


def upload_winrmcp(port: int, auth: str, data: bytes) -> None:
    import winrm

    from aibx import powershell as ps

    protocol = winrm.Protocol(
        f"http://127.0.0.1:{port}/wsman", transport=auth, username="aibx", password=PASSWORD, proxy=None
    )
    tmp = f"%TEMP%\\winrmcp-{uuid.uuid4()}.tmp"
    chunk = ((8000 - len(tmp)) // 4) * 3
    shell, commands = None, 0

    def run(command: str) -> None:
        nonlocal shell, commands
        if shell is None or commands >= 15:
            if shell is not None:
                protocol.close_shell(shell, close_session=False)
            shell, commands = protocol.open_shell(), 0
        command_id = protocol.run_command(shell, command)
        _, _, code = protocol.get_command_output(shell, command_id)
        protocol.cleanup_command(shell, command_id)
        commands += 1
        if code != 0:
            raise RuntimeError(f"{command[:40]}… exited {code}")

    for i in range(0, max(len(data), 1), chunk):
        run(f'echo {base64.b64encode(data[i : i + chunk]).decode()} >> "{tmp}"')
    restore = (
        f"$tmp_file_path = {ps.quote(tmp)}\n$dest_file_path = {ps.quote(DEST)}\n"
        "$lines = Get-Content $tmp_file_path; $bytes = foreach ($l in $lines) { [Convert]::FromBase64String($l) }\n"
        "[IO.File]::WriteAllBytes($dest_file_path, [byte[]]$bytes); Remove-Item $tmp_file_path"
    )
    run(ps.encoded_command_line(restore, "powershell"))
    protocol.close_shell(shell)


# ----------------------------------------------------------------------------------------------- measuring
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes-mib", type=float, nargs="+", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--auth", choices=["ntlm", "basic"], default="ntlm")
    args = ap.parse_args()

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(child, args.auth), daemon=True)
    server.start()
    port = parent.recv()

    def ask(*msg):
        parent.send(msg)
        return parent.recv()

    print(f"# WinRM upload, {args.auth} over HTTP{' (message encryption)' if args.auth == 'ntlm' else ''}, loopback")
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, median of {args.repeat}")
    print("| size | method | seconds | MiB/s | HTTP requests | speed-up |")
    print("|---|---|---|---|---|---|")
    for mib in args.sizes_mib:
        data = os.urandom(int(mib * 1024 * 1024))
        want = hashlib.sha256(data).hexdigest()
        results = {}
        for name, fn in (("winrmcp (~6 KB/command)", upload_winrmcp), ("aibx", upload_aibx)):
            times, requests = [], 0
            for _ in range(args.repeat):
                ask("reset")
                started = time.perf_counter()
                fn(port, args.auth, data)
                times.append(time.perf_counter() - started)
                requests = ask("requests")
                if ask("sha256", DEST) != want:
                    raise SystemExit(f"{name}: the uploaded file does not match")
            results[name] = (statistics.median(times), requests)
        base = results["winrmcp (~6 KB/command)"][0]
        for name, (seconds, requests) in results.items():
            speed = f"{base / seconds:.1f}×" if name == "aibx" else "1×"
            print(f"| {mib:g} MiB | {name} | {seconds:.2f} | {mib / seconds:.1f} | {requests} | {speed} |")
    ask("stop")


if __name__ == "__main__":
    main()
