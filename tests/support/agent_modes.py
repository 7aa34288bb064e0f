"""Run a test module's SSH tests twice: with the SSH transport's command agent (the default) and without it
(``AIBX_SSH_AGENT=off``: one exec channel per command), so the same assertions prove the same semantics both ways.

Use: ``from tests.support.agent_modes import ssh_agent_mode  # noqa: F401`` in the test module, then
``pytestmark = pytest.mark.usefixtures("ssh_agent_mode")`` for all its tests, or the same mark on each SSH test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(params=["agent", "channels"])
def ssh_agent_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AIBX_SSH_AGENT", "on" if request.param == "agent" else "off")
    yield request.param
