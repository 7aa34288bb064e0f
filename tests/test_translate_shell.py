"""The shell aibx translate writes: every generated script passes ``sh -n`` as Packer runs inline lines
(``#!/bin/sh -e`` and the lines), and the idioms really work when /bin/sh runs them here: downloads from a
loopback HTTP server are checked before anything runs, files are written byte for byte, and a Packer
provisioner translated to AIB runs its ``execute_command`` with Packer's variables and exit codes."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aibx import model
from aibx.translators import AibOptions, PackerInputs, idioms, packer_to_aib, read_packer
from tests.support.requirements import require_program
from tests.translate_cases import EXPECTED


def inline_script(lines: list[str]) -> str:
    """What Packer's shell provisioner (and AIB, which runs it) makes of inline lines."""
    return "#!/bin/sh -e\n" + "".join(f"{line}\n" for line in lines)


def run_inline(lines: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = cwd / f"inline-{uuid.uuid4().hex}.sh"
    script.write_text(inline_script(lines))
    script.chmod(0o755)
    return subprocess.run([str(script)], cwd=cwd, capture_output=True, text=True, timeout=60, env=env, check=False)


def generated_shell() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for hcl in sorted((EXPECTED / "aib-to-packer").glob("*.pkr.hcl")):
        if hcl.name.startswith("windows"):
            continue
        config = read_packer(str(hcl), PackerInputs(env={}))
        for build in config.builds:
            for source in build.sources:
                for i, p in enumerate(build.provisioners(source)):
                    if p.labels == ["shell"]:
                        out.append((f"{hcl.name} provisioner {i}", p.value("inline")))
    for path in sorted((EXPECTED / "packer-to-aib").rglob("*.json")):
        if path.name.endswith((".report.json", ".uploads.json")):
            continue
        for i, step in enumerate(json.loads(path.read_text())["properties"]["customize"]):
            if step["type"] == "Shell" and "inline" in step:
                out.append((f"{path.parent.name}/{path.name} customize {i}", step["inline"]))
    return out


CASES = generated_shell()


@pytest.mark.parametrize(("name", "lines"), CASES, ids=[name for name, _ in CASES])
def test_sh_n(name: str, lines: list[str], tmp_path: Path) -> None:
    sh = require_program("dash")
    script = tmp_path / "s.sh"
    script.write_text(inline_script(lines))
    result = subprocess.run([sh, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def http(tmp_path: Path):
    """A loopback HTTP server for the files in ``root``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_script_download_runs_only_with_the_right_checksum(http, tmp_path: Path) -> None:
    require_program("curl")
    root, base = http
    marker = tmp_path / "ran"
    body = f"#!/bin/sh\necho ran > {marker}\necho from the script\n".encode()
    name = f"script-{uuid.uuid4().hex}.sh"
    (root / name).write_bytes(body)
    good = run_inline(idioms.linux_run_script(f"{base}/{name}", hashlib.sha256(body).hexdigest()), tmp_path)
    assert good.returncode == 0, good.stderr
    assert "from the script" in good.stdout and marker.exists()
    assert not Path(f"/tmp/aibx-{name}").exists()  # removed after the run
    marker.unlink()
    bad = run_inline(idioms.linux_run_script(f"{base}/{name}", "0" * 64), tmp_path)
    assert bad.returncode != 0 and "FAILED" in bad.stdout + bad.stderr
    assert not marker.exists()
    Path(f"/tmp/aibx-{name}").unlink(missing_ok=True)


def test_file_download_lands_only_when_verified(http, tmp_path: Path) -> None:
    require_program("curl")
    root, base = http
    body = bytes(range(256)) * 4
    (root / "data.bin").write_bytes(body)
    dest = tmp_path / "it's here" / "data.bin"
    dest.parent.mkdir()
    result = run_inline(
        idioms.linux_fetch_file(f"{base}/data.bin", str(dest), hashlib.sha256(body).hexdigest()), tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == body
    other = tmp_path / "other.bin"
    result = run_inline(idioms.linux_fetch_file(f"{base}/data.bin", str(other), "1" * 64), tmp_path)
    assert result.returncode != 0 and not other.exists()
    missing = run_inline(idioms.linux_fetch_file(f"{base}/nope", str(other), None), tmp_path)
    assert missing.returncode != 0 and not other.exists()


@pytest.mark.parametrize(
    "content",
    [b"plain text\nsecond line\n", b"AIBX_EOF\n{{ .Path }}\n", bytes(range(256)), b"no newline at the end", b""],
)
def test_write_file_is_byte_exact(content: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    result = run_inline(idioms.linux_write_file(str(dest), content), tmp_path)
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == content


def test_deprovision_is_staged_verbatim_and_run_from_its_file(tmp_path: Path) -> None:
    lines = idioms.stage_deprovision(model.OsType.LINUX)
    assert lines[0] == "cat > /tmp/DeprovisioningScript.sh <<'AIBX_EOF'"
    staged = [lines[0].replace("/tmp/DeprovisioningScript.sh", str(tmp_path / "d.sh")), *lines[1:]]
    assert run_inline(staged, tmp_path).returncode == 0
    assert (tmp_path / "d.sh").read_text() == idioms.default_deprovision_script(model.OsType.LINUX)


def test_translated_packer_shell_behaves_as_packer_runs_it(tmp_path: Path) -> None:
    """environment_vars with Packer's quoting, a custom execute_command, a shebang, valid_exit_codes: the AIB
    step does what Packer's shell provisioner does with them."""
    out = tmp_path / "out.txt"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "b.pkr.hcl").write_text(
        f"""
source "azure-arm" "img" {{
  location = "x"
  image_publisher = "p"
  image_offer = "o"
  image_sku = "s"
  managed_image_name = "i"
  managed_image_resource_group_name = "rg"
}}
build {{
  sources = ["source.azure-arm.img"]
  provisioner "shell" {{
    execute_command  = "chmod +x {{{{ .Path }}}}; {{{{ .Vars }}}} sh -c 'exec {{{{ .Path }}}}'"
    environment_vars = ["GREETING=it's a test", "EMPTY="]
    inline_shebang   = "/bin/sh"
    remote_folder    = "{tmp_path}"
    inline           = ["echo \\"$GREETING|$EMPTY|$0\\" > {out}", "false", "exit 3"]
    valid_exit_codes = [3]
  }}
}}
"""
    )
    config = read_packer(str(tmp_path / "cfg"), PackerInputs(env={}))
    [translation] = packer_to_aib(config, AibOptions(cwd=str(tmp_path)))
    [step] = translation.template.customize
    result = run_inline(step.inline, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr  # exit 3 is valid; no -e: `false` did not stop it
    greeting, empty, script = out.read_text().strip().split("|")
    assert (greeting, empty) == ("it's a test", "")
    assert script.startswith(str(tmp_path)) and not Path(script).exists()  # staged there, removed afterwards
