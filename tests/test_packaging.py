"""The distribution: the wheel and sdist build without warnings (PEP 517, as `python -m build` does, here without
an isolated environment so no network is needed), the wheel holds the package data and nothing of the tests,
the sdist rebuilds, and the wheel installed alone in a fresh virtualenv gives a working `aibx` command.

scripts/check_package.sh does the same with `python -m build` and `pipx install` (they download setuptools and
the dependencies, so they are not part of the test suite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.slow  # three builds and a virtualenv: about 20 s

IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.pyc",
    "build",
    "dist",
    "*.egg-info",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
)


def build(source: Path, kind: str, out: Path) -> tuple[Path, str]:
    """Build one distribution with the PEP 517 hooks of the current interpreter; (path, what the backend said)."""
    from build import ProjectBuilder

    said: list[str] = []

    def runner(cmd, cwd=None, extra_environ=None):
        env = {**os.environ, **(extra_environ or {})}
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        said.append(done.stdout + done.stderr)
        if done.returncode:
            raise RuntimeError(f"{kind} build failed:\n{done.stdout}{done.stderr}")

    builder = ProjectBuilder(source, python_executable=sys.executable, runner=runner)
    path = builder.build(kind, out)
    return Path(path), "".join(said)


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("dist")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=IGNORE)
    wheel, wheel_log = build(source, "wheel", work / "out")
    sdist, sdist_log = build(source, "sdist", work / "out")
    for log in (wheel_log, sdist_log):
        assert "!!" not in log and "Warning" not in log, log  # setuptools' configuration and deprecation banners
    return {"wheel": wheel, "sdist": sdist, "work": work}


def test_the_wheel_holds_the_package_and_its_data_and_nothing_else(distributions: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(distributions["wheel"]).namelist())
    data = {f"aibx/data/{p.name}" for p in (ROOT / "aibx" / "data").iterdir() if p.suffix in (".sh", ".ps1")}
    assert data and data <= names
    assert "aibx/swagger_tables.py" in names and "aibx/py.typed" in names
    for folder, package in (("aibx", "aibx"), ("engine", "aibx/engine"), ("provisioners", "aibx/provisioners")):
        modules = {f"{package}/{p.relative_to(ROOT / folder).as_posix()}" for p in (ROOT / folder).rglob("*.py")}
        assert modules <= names, modules - names
    assert {f"aibx/translators/{p.name}" for p in (ROOT / "translators").glob("*.py")} <= names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"aibx", f"{distributions['wheel'].name.split('-py3')[0]}.dist-info"}, tops
    entry_points = zipfile.ZipFile(distributions["wheel"]).read(
        next(n for n in names if n.endswith("entry_points.txt"))
    )
    assert b"aibx = aibx.cli:main" in entry_points


def test_the_sdist_is_the_whole_source_and_builds_the_same_wheel(distributions: dict[str, Path]) -> None:
    with tarfile.open(distributions["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(distributions["work"] / "unpacked", filter="data")
    for needed in ("pyproject.toml", "README.md", "aibx/cli.py", "engine/runner.py", "translators/hcl_eval.py"):
        assert needed in names
    assert "tests/support/fuzzing.py" in names and "fixtures/quickstart/hello-linux.json" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    unpacked = next((distributions["work"] / "unpacked").iterdir())
    rebuilt, _ = build(unpacked, "wheel", distributions["work"] / "rebuilt")
    original = sorted(zipfile.ZipFile(distributions["wheel"]).namelist())
    assert sorted(zipfile.ZipFile(rebuilt).namelist()) == original


def test_the_wheel_alone_gives_a_working_command(distributions: dict[str, Path]) -> None:
    """Installed without the source tree (and without dependencies: validate and plan need none), the command
    and its package data work."""
    env_dir = distributions["work"] / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    subprocess.run([*pip, str(distributions["wheel"])], check=True, capture_output=True)
    aibx = str(env_dir / "bin" / "aibx")
    quickstart = str(FIXTURES / "quickstart" / "hello-linux.json")
    elsewhere = {"cwd": distributions["work"], "capture_output": True, "text": True}
    version = subprocess.run([aibx, "--version"], **elsewhere)
    assert version.returncode == 0 and version.stdout.startswith("aibx ")
    assert subprocess.run([aibx, "validate", quickstart], **elsewhere).returncode == 0
    plan = subprocess.run([aibx, "plan", quickstart, "--generalize"], **elsewhere)
    assert plan.returncode == 0, plan.stderr
    script = (ROOT / "aibx" / "data" / "DeprovisioningScript.sh").read_bytes()  # staged from the package data
    assert all(f"| {line}" in plan.stdout for line in script.decode().splitlines())  # the stage step's stdin
