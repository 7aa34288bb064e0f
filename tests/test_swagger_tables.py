"""The schema tables are generated from the swagger files in scripts/swagger; they must not drift."""

import subprocess
import sys

from tests.conftest import ROOT


def test_committed_tables_match_the_swagger_files():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_swagger_tables.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
