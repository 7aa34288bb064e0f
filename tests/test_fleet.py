"""aibx run on many hosts at once: --host repeated, --hosts-file, --parallel; output prefixed per host, one log and
report entry per host, the summary table, and the worst host's exit code. Real sshd targets on loopback
(tests/support/fleet.py)."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aibx.engine.fleet import (
    HostListError,
    check_unique,
    file_safe,
    parse_host_text,
    per_host_paths,
    read_hosts_file,
    worst_exit_code,
)
from tests.support.cli import invoke
from tests.support.fleet import TargetFleet
from tests.support.power import PowerWatcher
from tests.support.requirements import require_root
from tests.support.sshd import SshTarget
from tests.support.templates import shell, write_template

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------- the rules
@pytest.mark.parametrize(
    ("codes", "worst"),
    [
        ([], 0),
        ([0, 0, 0], 0),
        ([0, 1, 0], 1),
        ([1, 2], 2),
        ([1, 3, 2], 3),
        ([3, 4, 1], 4),
        ([4, 70, 3], 70),
        ([70, 130, 4], 130),
        ([0, 99], 99),  # an unknown code is worse than every documented failure but an internal error
    ],
)
def test_the_fleet_exit_code_is_the_worst_hosts(codes: list[int], worst: int) -> None:
    assert worst_exit_code(codes) == worst


def test_hosts_file_lines_comments_and_errors(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# the build VMs\n\nvm1\n  azureuser@vm2:2222   # a comment after the target\nssh://root@[::1]\n")
    assert [(e.text, e.origin) for e in read_hosts_file(str(hosts))] == [
        ("vm1", f"{hosts}:3"),
        ("azureuser@vm2:2222", f"{hosts}:4"),
        ("ssh://root@[::1]", f"{hosts}:5"),
    ]
    hosts.write_text("vm1\nftp://vm2\n")
    with pytest.raises(HostListError, match=rf"{hosts}:2: 'ftp://vm2': unknown scheme ftp://"):
        read_hosts_file(str(hosts))
    hosts.write_text("# nothing\n\n")
    with pytest.raises(HostListError, match="no hosts in it"):
        read_hosts_file(str(hosts))
    with pytest.raises(HostListError, match="No such file"):
        read_hosts_file(str(tmp_path / "missing.txt"))
    hosts.write_text("vm1\nazureuser@vm2\nssh://vm1\n")
    with pytest.raises(HostListError, match=rf"{hosts}:3: ssh://vm1 is listed twice \(first at {hosts}:1\)"):
        check_unique(read_hosts_file(str(hosts)))


def test_log_names_are_safe_and_distinct() -> None:
    assert file_safe("ssh://azureuser@10.0.0.4:2222") == "azureuser@10.0.0.4_2222"
    assert file_safe("../../etc/passwd") == "etc_passwd"
    entries = [parse_host_text(t, "--host") for t in ("vm:1", "vm_1", "VM:1", "ssh://[::1]:22")]
    assert [p.name for p in per_host_paths("logs/customization.log", entries)] == [
        "customization-vm_1.log",
        "customization-vm_1-2.log",
        "customization-VM_1-3.log",
        "customization-1_22.log",
    ]


# ----------------------------------------------------------------------------------------------- real fleets
def _prepare_markers(fleet: TargetFleet, failing: int | None) -> None:
    for i, target in enumerate(fleet.targets):
        done = target.dir / "done"
        done.write_text("")
        done.chmod(0o666)
        if i == failing:
            (target.dir / "fail-here").write_text("")


FLEET_STEPS = [
    shell("prepare", "echo preparing", "sleep 0.2"),
    shell(
        "check",
        'if [ -e "$AIBX_CTL_DIR/fail-here" ]; then echo "E: package foo is broken on this VM" >&2; exit 1; fi',
        "echo checked",
    ),
    shell("finish", 'cat /proc/sys/kernel/random/boot_id >> "$AIBX_CTL_DIR/done"'),
]


def test_a_fleet_of_16_with_one_failing(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(16)
    _prepare_markers(fleet, failing=5)
    hosts_file = fleet.hosts_file(tmp_path / "hosts.txt", "ten of them")
    template = write_template(tmp_path, FLEET_STEPS)
    report_path = tmp_path / "report.json"
    started = time.monotonic()
    result = invoke(
        "run", template, "--hosts-file", hosts_file, *fleet.auth_args(), "--parallel", "6",
        "--log", tmp_path / "customization.log", "--report", report_path,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.code == 1, result.text
    failing = fleet.targets[5]
    for i, target in enumerate(fleet.targets):
        done = (target.dir / "done").read_text()
        assert (done == "") is (i == 5), (i, done)  # the others finished
    # every line of output says which host it is from
    out = result.out
    for target in fleet.targets:
        assert f"[{target.url}] ==> [2/5] prepare (Shell)" in out
        assert f"[{target.url}] prepare | preparing" in out
    assert f"[{failing.url}] aibx: run failed" in result.err
    assert f"[{failing.url}] check | E: package foo is broken on this VM" in out
    # the summary: one line per host, the failing one with its reason, and the exit status
    summary = out[out.index("16 hosts: ") :]
    assert summary.startswith("16 hosts: 15 succeeded, 1 failed; exit status 1\n")
    lines = summary.splitlines()
    assert lines[1].split() == ["host", "outcome", "steps", "ok", "reboots", "time", "exit"]
    rows = {line.split()[0]: line for line in lines[2:] if line.startswith("ssh://")}
    assert len(rows) == 16
    assert rows[failing.url].split()[1:4] == ["failed", "2/5", "0"]
    assert "step 'check' failed: exit code 1" in rows[failing.url]
    assert all(rows[t.url].split()[1:3] == ["succeeded", "5/5"] for t in fleet.targets if t is not failing)
    # one log per host
    for target, path in zip(fleet.targets, per_host_paths(str(tmp_path / "customization.log"),
                                                          [parse_host_text(t.url, "x") for t in fleet.targets]),
                            strict=True):  # fmt: skip
        log = path.read_text()
        assert f"target {target.url}" in log and "step 4/5 'finish'" in log
    assert not (tmp_path / "customization.log").exists()
    # one report, an entry per host
    report = json.loads(report_path.read_text())
    assert report["exitCode"] == 1 and report["parallel"] == 6
    assert report["totals"] == {"hosts": 16, "failed": 1, "succeeded": 15}
    assert [h["host"] for h in report["hosts"]] == [t.url for t in fleet.targets]
    assert report["hosts"][5]["outcome"] == "failed" and report["hosts"][5]["exitCode"] == 1
    assert report["hosts"][5]["steps"][3]["outcome"] == "not run"
    # at most --parallel 6 at a time
    spans = [(h["start"], h["end"]) for h in report["hosts"]]
    peak = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert peak <= 6
    assert took < 60


def test_the_worst_host_decides_and_hosts_mix_from_both_options(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(3)
    _prepare_markers(fleet, failing=1)
    fleet.targets[2].kill()  # this VM is off
    hosts_file = tmp_path / "hosts.txt"
    hosts_file.write_text(f"{fleet.targets[1].url}  # the broken one\n{fleet.targets[2].url}\n")
    template = write_template(tmp_path, FLEET_STEPS)
    result = invoke(
        "run", template, "--host", fleet.targets[0].url, "--hosts-file", hosts_file, *fleet.auth_args(),
        "--log", tmp_path / "x.log", "--connect-timeout", "2s",
    )  # fmt: skip
    assert result.code == 3, result.text
    summary = result.out[result.out.index("3 hosts: ") :]
    assert summary.startswith("3 hosts: 1 succeeded, 1 failed, 1 connect failed; exit status 3\n")
    ok, broken, off = (re.escape(t.url) for t in fleet.targets)
    assert re.search(rf"^{ok} +succeeded +5/5 +0 +\S+ +0$", summary, re.M), summary
    assert re.search(rf"^{broken} +failed +2/5 +0 +\S+ +1  step 'check' failed: exit code 1", summary, re.M)
    assert re.search(rf"^{off} +connect failed +0/5 +0 +\S+ +3  cannot connect to .*connection refused", summary, re.M)
    assert (tmp_path / f"x-{file_safe(fleet.targets[2].url)}.log").read_text().count("connect failed") >= 1


def test_a_fleet_rides_out_reboots_on_every_host_at_once(make_fleet, tmp_path: Path) -> None:
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    fleet = make_fleet(16)
    _prepare_markers(fleet, failing=None)
    before = {t.url: t.boot_id for t in fleet.targets}
    steps = [shell("kernel-update", "echo updating", "sudo reboot"), FLEET_STEPS[2]]
    with PowerWatcher(fleet.targets, {"down_s": 0.5, "refused_s": 0.3}) as watcher:
        result = invoke(
            "run", write_template(tmp_path, steps), "--hosts-file", fleet.hosts_file(tmp_path / "hosts.txt"),
            *fleet.auth_args(), "--parallel", "16", "--log", tmp_path / "c.log", "--keepalive", "1s",
            "--report", tmp_path / "r.json", "--reconnect-timeout", "90s",
        )  # fmt: skip
    assert not watcher.errors, watcher.errors  # the simulated "hardware" itself failed
    assert result.code == 0, result.text
    for target in fleet.targets:
        assert target.boot_id != before[target.url]
        assert (target.dir / "done").read_text().strip() == target.boot_id  # the next step, on the new boot
    report = json.loads((tmp_path / "r.json").read_text())
    assert [h["totals"]["reboots"] for h in report["hosts"]] == [1] * 16
    summary = result.out[result.out.index("16 hosts: ") :]
    rows = [line.split() for line in summary.splitlines()[2:] if line.startswith("ssh://")]
    assert len(rows) == 16 and all(row[3] == "1" for row in rows)  # the reboots column


def test_a_fleet_fetches_each_script_once(make_fleet, tmp_path: Path, content_server) -> None:
    fleet = make_fleet(3)
    _prepare_markers(fleet, failing=None)
    body = b'#!/bin/sh\necho fetched-once >> "$AIBX_CTL_DIR/done"\n'
    url = content_server.serve("/setup.sh", body, failures=[503])  # one transient failure, then the script
    step_ = {"type": "Shell", "name": "setup", "scriptUri": url, "sha256Checksum": hashlib.sha256(body).hexdigest()}
    result = invoke(
        "run", write_template(tmp_path, [step_]), "--hosts-file", fleet.hosts_file(tmp_path / "hosts.txt"),
        *fleet.auth_args(), "--log", tmp_path / "c.log",
    )  # fmt: skip
    assert result.code == 0, result.text
    assert content_server.requests == ["/setup.sh", "/setup.sh"]  # the failure and one download, for 3 hosts
    assert all((t.dir / "done").read_text() == "fetched-once\n" for t in fleet.targets)
    assert result.text.count("try 2 of 10") == 1  # said once on the console
    assert all("try 2 of 10" in (tmp_path / f"c-{file_safe(t.url)}.log").read_text() for t in fleet.targets)


# ----------------------------------------------------------------------------------------------- usage
def test_host_list_mistakes_are_usage_errors(tmp_path: Path) -> None:
    template = write_template(tmp_path, [shell("noop", "true")])
    none = invoke("run", template)
    assert none.code == 2 and "--host TARGET (repeatable) or --hosts-file FILE" in none.err
    twice = invoke("run", template, "--host", "vm1", "--host", "ssh://vm1")
    assert twice.code == 2 and "--host: ssh://vm1 is listed twice (first at --host)" in twice.err
    parallel = invoke("run", template, "--host", "vm1", "--parallel", "0")
    assert parallel.code == 2 and "--parallel 0: must be at least 1" in parallel.err
    local = invoke("run", template, "--host", "local", "--host", "vm1")
    assert local.code == 2 and "local cannot be one of several hosts" in local.err
    missing = invoke("run", template, "--hosts-file", tmp_path / "nope.txt")
    assert missing.code == 2 and "nope.txt: No such file" in missing.err
    winrm = invoke("run", template, "--host", "winrms://aibx@vm1")
    assert winrm.code == 2 and "winrms://aibx@vm1 is a WinRM target, for Windows VMs" in winrm.err  # Linux template


def test_interrupting_a_fleet_stops_every_host(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(4)
    template = write_template(tmp_path, [shell("long", "echo started", "sleep 60")])
    console = tmp_path / "console.txt"
    with console.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aibx", "run", str(template), "--hosts-file",
             str(fleet.hosts_file(tmp_path / "hosts.txt")), *fleet.auth_args(), "--parallel", "2",
             "--log", str(tmp_path / "c.log"), "--report", str(tmp_path / "r.json")],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while console.read_text().count("==> [2/3] long") < 2:
            assert time.monotonic() < deadline, console.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, console.read_text()
    report = json.loads((tmp_path / "r.json").read_text())
    assert [h["outcome"] for h in report["hosts"]] == ["interrupted", "interrupted", "not run", "not run"]
    text = console.read_text()
    assert "4 hosts: " in text and "exit status 130" in text


def test_one_host_keeps_the_single_host_output(ssh_target: SshTarget, tmp_path: Path) -> None:
    """No prefix, the log under its own name, the report as before: a fleet of one is a plain run."""
    template = write_template(tmp_path, [shell("hello", "echo hi")])
    result = invoke(
        "run", template, "--host", ssh_target.url, "-i", ssh_target.client_key, "--known-hosts",
        ssh_target.known_hosts, "--log", tmp_path / "customization.log", "--report", tmp_path / "r.json",
    )  # fmt: skip
    assert result.code == 0, result.text
    assert "hello | hi\n" in result.out and "[" + ssh_target.url not in result.out and "hosts:" not in result.out
    assert (tmp_path / "customization.log").exists()
    assert "hosts" not in json.loads((tmp_path / "r.json").read_text())
