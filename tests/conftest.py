"""Shared pytest configuration. Fixtures for real targets live in tests/support/ and are registered here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.winrm_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

# Packer must never phone home from the test suite.
os.environ.setdefault("CHECKPOINT_DISABLE", "1")


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
