"""The differential tests with real Packer (issue 3): one template, built twice on real sshd targets.

* Packer 1.6.6 runs the template's *translated* build (``aibx translate --to packer``), with the azure-arm source
  swapped for Packer's ``null`` builder pointed at one target;
* ``aibx run`` runs the template itself against a second, identical target.

Both must leave the same files with the same contents on the targets, and print the same command output. The
scripts and files the template downloads come from a loopback HTTP server, so the translated download idioms
(curl, then sha256sum before anything runs) are exercised for real. The deprovision step is left out of both:
it would run waagent (``aibx run`` stages it and runs it only with ``--generalize``, and removes it at the end
otherwise); Packer's staged script is checked, including a customizer's override of it.

The other direction too: a Packer build run by Packer, and its AIB translation run by ``aibx run``: sudo through
``execute_command``, environment variables with quotes, a script with ``valid_exit_codes``, another shebang, a file
upload.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import hcl2
import pytest

from aibx.translators.to_packer import DEPROVISION_NAME
from tests.support.cli import invoke
from tests.support.packer import run_packer
from tests.support.requirements import require_program, require_root
from tests.support.sshd import SshTarget
from tests.translate_cases import TRANSLATE

FIXTURE = TRANSLATE / "differential" / "linux-steps.json"
WWW = TRANSLATE / "differential" / "www"
# every line a step prints on purpose (not the tools' own chatter: curl progress, sha256sum's verdict)
MARKERS = ("inline output:", "configure ran", "Welcome to an image", "validation ok")


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def null_build(hcl_text: str, target: SshTarget) -> str:
    """The translated build with its source swapped for the null builder on ``target``, without the packer {}
    block (Packer 1.6.6 predates it) and without the deprovision provisioner."""
    doc = hcl2.loads(hcl_text)
    doc.pop("packer")
    doc["source"] = null_build_source(target)
    [build] = doc["build"]
    build["sources"] = ['"source.null.target"']
    provisioners = build["provisioner"]
    names = [next(iter(p.values())).get("name") for p in provisioners]
    assert names[-1] == f'"{DEPROVISION_NAME}"'
    build["provisioner"] = provisioners[:-1]
    return hcl2.dumps(doc)


@pytest.fixture
def served(content_server) -> str:
    for f in WWW.iterdir():
        content_server.serve(f"/{f.name}", f.read_bytes())
    return content_server.url("").rstrip("/")


def test_packer_and_aibx_run_leave_the_same_vm(served: str, make_ssh_target, tmp_path: Path) -> None:
    require_root("each target needs its own /tmp, which its sshd gets in a mount namespace")
    require_program("curl")
    require_program("sha256sum", "coreutils")
    packer_target = make_ssh_target()
    aibx_target = make_ssh_target()

    # Packer: the translated build
    build_dir = tmp_path / "packer"
    build_dir.mkdir()
    translated = invoke(
        "translate", FIXTURE, "--to", "packer", "-p", f"baseUri={served}", "-o", build_dir / "t.pkr.hcl"
    )
    assert translated.code == 0, translated.text  # complete: this template has nothing Packer cannot do
    hcl_text = (build_dir / "t.pkr.hcl").read_text()
    (build_dir / "t.pkr.hcl").write_text(null_build(hcl_text, packer_target))
    packer = run_packer(["build", "-color=false", "t.pkr.hcl"], build_dir, tmp_path / "packer-home", timeout=300)
    assert packer.returncode == 0, packer.stdout + packer.stderr

    # aibx run: the template itself
    report = tmp_path / "report.json"
    run = invoke(
        "run", FIXTURE, "-p", f"baseUri={served}", "--host", aibx_target.url, "-i", aibx_target.client_key,
        "--known-hosts", aibx_target.known_hosts, "--log", tmp_path / "customization.log", "--report", report,
    )  # fmt: skip
    assert run.code == 0, run.text
    assert {s["outcome"] for s in json.loads(report.read_text())["steps"]} <= {"succeeded"}

    # the same files, with the same contents
    packer_files = files_under(packer_target.host_path("/tmp/aibx-diff"))
    aibx_files = files_under(aibx_target.host_path("/tmp/aibx-diff"))
    assert sorted(packer_files) == [
        "conf.d/app.conf", "escapes.txt", "inline.txt", "listing.txt", "motd.size", "motd.txt", "state.txt",
        "user.txt", "validated.txt",
    ]  # fmt: skip
    assert packer_files == aibx_files
    assert packer_files["state.txt"] == b"it's shared\n"
    assert packer_files["escapes.txt"] == b'tab\tand "quotes" and $HOME-free text\n'
    assert packer_files["motd.txt"] == (WWW / "motd.txt").read_bytes()
    # AIB's deprovision script was staged before the customizers, and the override replaced it; Packer's build
    # leaves it, aibx run removes it at the end of a run without --generalize (nothing runs it: issue 13)
    staged = packer_target.host_path("/tmp/DeprovisioningScript.sh").read_bytes()
    assert staged == b"#!/bin/sh\necho custom deprovision\n"
    outcomes = {s["name"]: s["outcome"] for s in json.loads(report.read_text())["steps"]}
    assert outcomes["remove the staged deprovisioning script"] == "succeeded"
    # nothing else left behind in /tmp by either (downloads and staged scripts are cleaned up)
    assert sorted(p.name for p in packer_target.host_path("/tmp").iterdir()) == ["DeprovisioningScript.sh", "aibx-diff"]
    assert sorted(p.name for p in aibx_target.host_path("/tmp").iterdir()) == ["aibx-diff"]

    # the same command output, in the same order
    def printed(text: str) -> list[str]:
        return [m for line in text.splitlines() for m in [_marked(line)] if m]

    packer_lines = printed(packer.stdout)
    assert packer_lines == printed(run.text)
    assert packer_lines == [
        "inline output: it's shared",
        "configure ran with 2 arguments",
        "Welcome to an image built twice: by Packer and by aibx.",
        "validation ok",
    ]
    assert hashlib.sha256((WWW / "configure.sh").read_bytes()).hexdigest() in hcl_text  # checked before it ran


def _marked(line: str) -> str | None:
    for marker in MARKERS:
        i = line.find(marker)
        if i >= 0:
            return re.sub(r"\s+$", "", line[i:])
    return None


PACKER_BUILD = TRANSLATE / "differential" / "packer-build"
PACKER_MARKERS = ("as-root: plain", "setup writes to", "no-errexit done", "Hello from a Packer", "Second line with")


def swap_source(hcl_text: str, target: SshTarget) -> str:
    """The Packer build's azure-arm source replaced by the null builder on ``target``."""
    doc = hcl2.loads(hcl_text)
    doc["source"] = null_build_source(target)
    doc["build"][0]["sources"] = ['"source.null.target"']
    return hcl2.dumps(doc)


def null_build_source(target: SshTarget) -> list[dict]:
    return [
        {
            '"null"': {
                '"target"': {
                    "ssh_host": f'"{target.host}"',
                    "ssh_port": target.port,
                    "ssh_username": f'"{target.user}"',
                    "ssh_private_key_file": f'"{target.client_key}"',
                    "ssh_timeout": '"30s"',
                    "__is_block__": True,
                }
            }
        }
    ]


def test_a_packer_build_and_its_aib_translation_leave_the_same_vm(make_ssh_target, tmp_path: Path) -> None:
    require_root("each target needs its own /tmp, which its sshd gets in a mount namespace")
    packer_target = make_ssh_target()
    aibx_target = make_ssh_target()

    template = tmp_path / "aib.json"
    translated = invoke("translate", PACKER_BUILD, "--to", "aib", "-o", template)
    assert translated.code == 0, translated.text  # complete: nothing dropped

    build_dir = tmp_path / "packer-build"
    shutil.copytree(PACKER_BUILD, build_dir)
    hcl = build_dir / "build.pkr.hcl"
    hcl.write_text(swap_source(hcl.read_text(), packer_target))
    packer = run_packer(["build", "-color=false", "."], build_dir, tmp_path / "packer-home", timeout=300)
    assert packer.returncode == 0, packer.stdout + packer.stderr

    run = invoke(
        "run", template, "--host", aibx_target.url, "-i", aibx_target.client_key,
        "--known-hosts", aibx_target.known_hosts, "--log", tmp_path / "customization.log",
    )  # fmt: skip
    assert run.code == 0, run.text

    packer_files = files_under(packer_target.host_path("/tmp/pkr-diff"))
    assert sorted(packer_files) == [
        "greeting.txt", "hello.txt", "listing.txt", "setup.txt", "shebang.txt", "simple.txt",
    ]  # fmt: skip
    assert packer_files == files_under(aibx_target.host_path("/tmp/pkr-diff"))
    assert packer_files["hello.txt"] == (PACKER_BUILD / "files" / "hello.txt").read_bytes()
    assert packer_files["shebang.txt"] == b"after false: 1\n"  # /bin/sh without -e went on, in both

    def printed(text: str) -> list[str]:
        out = []
        for line in text.splitlines():
            for marker in PACKER_MARKERS:
                if marker in line:
                    out.append(line[line.index(marker) :].rstrip())
        return out

    assert printed(packer.stdout) == printed(run.text)
    assert len(printed(packer.stdout)) == len(PACKER_MARKERS)
    # the staged copies of the scripts were removed afterwards, as Packer removes its own
    for target in (packer_target, aibx_target):
        assert not [p for p in target.host_path("/tmp").iterdir() if p.name.startswith("script_")]
