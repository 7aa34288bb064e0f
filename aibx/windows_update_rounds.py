"""The Windows Update round protocol, spoken by the provisioner's script and the engine's executor.

Each round prints one ``AIBX-WU-RESULT {json}`` line; ``parse_round_output`` reads it and ``next_move`` decides
what follows: restart and search again, search again, done, or fail (with the reason). Rounds are bounded
(``max_rounds``); an update that was installed and is offered again stops the loop instead of rebooting forever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

RESULT_MARKER = "AIBX-WU-RESULT "
MAX_ROUNDS = 10


@dataclass
class RoundResult:
    """What one round reported (the JSON of its ``AIBX-WU-RESULT`` line)."""

    status: str  # none, installed, reboot-required, error
    found: int = 0
    selected: int = 0
    skipped: int = 0
    installed: int = 0
    failed: int = 0
    reboot_required: bool = False
    more: bool = False
    updates: list[dict[str, str]] = field(default_factory=list)
    message: str = ""

    def installed_ids(self) -> set[str]:
        return {u.get("id", "") for u in self.updates if u.get("result") == "installed"}

    def selected_ids(self) -> set[str]:
        return {u.get("id", "") for u in self.updates}

    def summary(self, number: int) -> str:
        text = (
            f"round {number}: found {self.found}, selected {self.selected}, skipped {self.skipped}, "
            f"installed {self.installed}, failed {self.failed}"
        )
        failures = [
            f"{u.get('kb') or u.get('title', '?')}: {u.get('hresult', '')}".strip()
            for u in self.updates
            if u.get("result", "").endswith("failed")
        ]
        if failures:
            text += " (" + "; ".join(failures) + ")"
        if self.reboot_required:
            text += "; restart required"
        if self.more:
            text += "; more updates left"
        return text


def parse_round_output(stdout: str) -> RoundResult | None:
    """The result of a round from its stdout; None if the round never printed one (it was killed)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith(RESULT_MARKER):
            try:
                data = json.loads(line[len(RESULT_MARKER) :])
            except json.JSONDecodeError:
                return None
            if not isinstance(data, dict) or not isinstance(data.get("status"), str):
                return None
            updates = data.get("updates") or []
            if isinstance(updates, dict):  # ConvertTo-Json writes a one-element array as an object
                updates = [updates]
            return RoundResult(
                status=data["status"],
                found=int(data.get("found") or 0),
                selected=int(data.get("selected") or 0),
                skipped=int(data.get("skipped") or 0),
                installed=int(data.get("installed") or 0),
                failed=int(data.get("failed") or 0),
                reboot_required=bool(data.get("rebootRequired")),
                more=bool(data.get("more")),
                updates=[{k: str(v) for k, v in u.items()} for u in updates if isinstance(u, dict)],
                message=str(data.get("message") or ""),
            )
    return None


@dataclass(frozen=True)
class Move:
    action: str  # "restart" (then another round), "again" (another round now), "done", "fail"
    reason: str


def next_move(rounds: list[RoundResult | None], max_rounds: int = MAX_ROUNDS) -> Move:
    """What the engine does after the last of ``rounds`` (None: that round printed no result)."""
    if not rounds:
        return Move("again", "first round")
    last, number = rounds[-1], len(rounds)
    if last is None:
        return Move("fail", f"round {number} ended without a result line (was the update script stopped?)")
    if last.status == "error":
        return Move("fail", f"round {number}: {last.message or 'the update script failed'}")
    earlier = set().union(*(r.installed_ids() for r in rounds[:-1] if r is not None))
    again = sorted(earlier & last.selected_ids() - {""})
    if again:
        titles = [u.get("kb") or u.get("title", "") for u in last.updates if u.get("id") in again]
        return Move(
            "fail",
            f"round {number}: {', '.join(titles)} installed in an earlier round and offered again; stopping instead "
            "of looping (exclude it with a filter)",
        )
    if last.reboot_required or last.status == "reboot-required":
        previous = rounds[-2] if number > 1 else None
        if last.installed == 0 and previous is not None and previous.reboot_required and previous.installed == 0:
            return Move(
                "fail",
                f"round {number}: a restart is still pending after restarting, with nothing installed in between "
                f"({last.message or 'the pending-restart flag does not clear'})",
            )
        if number >= max_rounds:
            return Move("fail", f"still needs a restart after {number} rounds (the limit)")
        return Move("restart", last.message or "a restart is required")
    if last.installed == 0 and not last.more:
        return Move("done", last.message or "no applicable updates left")
    if number >= max_rounds:
        return Move("fail", f"updates still left after {number} rounds (the limit)")
    return Move("again", "more updates may be applicable")
