"""``TargetFleet``: N real sshd targets on loopback for "many hosts" tests and benchmarks. They share one client
key (``aibx run -i KEY`` serves them all) and one ``known_hosts`` listing every host key, and are prepared and
started in parallel (32 targets start in about a second on 2 cores).
"""

from __future__ import annotations

import concurrent.futures
import tempfile
from pathlib import Path
from typing import Any

from tests.support.sshd import SshTarget, keygen, run_base_dir


class TargetFleet:
    def __init__(self, count: int, name: str = "fleet", *, base_dir: Path | None = None, **target_args: Any) -> None:
        base = base_dir or run_base_dir()
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"aibx-{name[:30]}-", dir=base))
        self.dir.chmod(0o755)
        self.client_key = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.targets = [
            SshTarget(f"{name[:30]}-{i:02d}", base_dir=base, client_key=self.client_key, **target_args)
            for i in range(count)
        ]

    def start(self) -> TargetFleet:
        """Prepare and start every target; if one cannot start, the others are removed again."""
        keygen(self.client_key)
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda t: t.prepare().start(), self.targets))
        except BaseException:
            self.remove()
            raise
        self.known_hosts.write_text("".join(t.known_hosts_line() + "\n" for t in self.targets))
        return self

    def remove(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda t: t.remove(), self.targets))
        for path in (self.client_key, Path(f"{self.client_key}.pub"), self.known_hosts):
            path.unlink(missing_ok=True)
        self.dir.rmdir()

    def __enter__(self) -> TargetFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def hosts_file(self, path: Path, comment: str = "") -> Path:
        """A ``--hosts-file``: one target per line, with a comment line first."""
        lines = [f"# {comment or 'aibx test fleet'}", *(t.url for t in self.targets)]
        path.write_text("\n".join(lines) + "\n")
        return path

    def auth_args(self) -> list[str]:
        return ["-i", str(self.client_key), "--known-hosts", str(self.known_hosts)]
