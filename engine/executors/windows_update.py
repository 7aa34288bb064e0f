"""The ``WindowsUpdate`` executor: rounds of the update command, each ending with an ``AIBX-WU-RESULT`` line that
``next_move`` (the round protocol, ``aibx.windows_update_rounds``) turns into what comes next: restart the VM and
search again, search again, done, or fail (a loop, a pending restart that does not clear, the round limit, an
error).

A round cut short by a restart (an update that restarts the VM itself) is followed by another round. A round whose
connection dropped *without* a restart fails the step: the update task may still be running on the VM, and aibx
never starts a second one beside it.
"""

from __future__ import annotations

import asyncio

from aibx.durations import format_duration
from aibx.engine.events import ActionStarted, Outcome, UpdateRound
from aibx.engine.executors.base import StepRun, executes
from aibx.engine.reboots import one_more_drop
from aibx.engine.session import StepFailed
from aibx.engine.transports.base import ConnectionLost, TransportError
from aibx.plan import WindowsUpdate
from aibx.windows_update_rounds import RESULT_MARKER, Move, RoundResult, next_move, parse_round_output

# how the engine restarts a VM between Windows Update rounds
WINDOWS_UPDATE_RESTART = 'shutdown /r /f /t 0 /c "aibx windows update"'


class _Rounds:
    def __init__(self, run: StepRun, action: WindowsUpdate) -> None:
        self.run, self.action = run, action
        self.rounds: list[RoundResult | None] = []  # the rounds that finished, for next_move
        self.started = 0  # rounds started, including those a restart cut short
        self.drops = 0
        self.restarts = 0

    async def one(self) -> tuple[int, RoundResult] | None:
        """Run the next round; its exit code and result, or None when a restart cut it short (or it never ran)."""
        session, ref, action = self.run.session, self.run.ref, self.action
        if self.started >= action.max_rounds:
            cut = self.started - len(self.rounds)
            raise StepFailed(
                Outcome.FAILED,
                f"Windows Update did not finish within {action.max_rounds} rounds (the limit); {cut} of them "
                "were cut short by restarts of the VM",
            )
        self.started += 1
        detail = f"Windows Update round {self.started} (at most {action.max_rounds})"
        session.emit(ActionStarted(session.target, step=ref, kind="exec", text=action.command, detail=detail))
        collector = session.collector(ref, capture=RESULT_MARKER)
        try:
            code = await session.guarded(session.live().run(action.command, on_output=collector.feed))
        except ConnectionLost as exc:
            collector.flush()
            await self.dropped(exc)
            return None
        except TransportError as exc:
            raise StepFailed(Outcome.FAILED, str(exc)) from None
        finally:
            collector.flush()
        last = parse_round_output("\n".join(collector.captured))
        self.rounds.append(last)
        if last is None:
            raise StepFailed(
                Outcome.FAILED,
                f"Windows Update round {self.started} ended without its result line ({RESULT_MARKER.strip()}): "
                + collector.failure_message(code, (0,)),
                code,
            )
        return code, last

    async def dropped(self, exc: ConnectionLost) -> None:
        """The connection dropped during a round: the same round once the VM answers if it never started; the next
        one if a restart cut it short; a failure if the VM came back without restarting."""
        session, ref, result, reboots = self.run.session, self.run.ref, self.run.result, self.run.reboots
        self.drops = one_more_drop(self.drops, exc)
        if not exc.command_started:
            self.started -= 1  # it never ran: the same round, once the VM answers
            rebooted = await reboots.ride_out(ref, str(exc), "the start of a Windows Update round")
            reboots.count_reboot(result, rebooted, "the VM restarted before a Windows Update round started")
            return
        rebooted = await reboots.ride_out(ref, str(exc), f"Windows Update round {self.started}")
        if rebooted is False:
            raise StepFailed(
                Outcome.FAILED,
                f"the connection dropped during Windows Update round {self.started} ({exc}) and the VM came back "
                f"without restarting (boot id {session.boot_id} unchanged): the round may still be running on "
                "the VM as a scheduled task; aibx does not start another beside it",
            ) from None
        reboots.count_reboot(result, rebooted, f"the VM restarted during Windows Update round {self.started}")
        session.notice(
            ref,
            f"Windows Update round {self.started} was cut short by a restart of the VM; the next round searches again",
        )

    def report(self, last: RoundResult, move: Move) -> None:
        session = self.run.session
        session.emit(
            UpdateRound(
                session.target,
                step=self.run.ref,
                number=self.started,
                max_rounds=self.action.max_rounds,
                summary=last.summary(self.started),
                next=move.action,
                found=last.found,
                selected=last.selected,
                skipped=last.skipped,
                installed=last.installed,
                failed=last.failed,
                reboot_required=last.reboot_required,
                updates=tuple(
                    (u.get("kb", ""), u.get("title", ""), u.get("result", ""), u.get("hresult", ""))
                    for u in last.updates
                ),
            )
        )

    def done(self, move: Move) -> None:
        installed = sum(r.installed for r in self.rounds if r is not None)
        started, restarts = self.started, self.restarts
        self.run.session.notice(
            self.run.ref,
            f"Windows Update done after {started} round{'s' * (started != 1)}: {installed} installed, "
            f"{restarts} restart{'s' * (restarts != 1)}; {move.reason}",
        )

    async def restart(self, move: Move) -> None:
        session, ref = self.run.session, self.run.ref
        detail = f"after Windows Update round {self.started}: {move.reason}"
        session.emit(
            ActionStarted(session.target, step=ref, kind="restart", text=WINDOWS_UPDATE_RESTART, detail=detail)
        )
        window = session.options.reconnect_timeout
        limit = f"{format_duration(window)} (--reconnect-timeout)"
        until = asyncio.get_running_loop().time() + window
        rebooted = await self.run.reboots.restart_vm(ref, WINDOWS_UPDATE_RESTART, until, limit)
        self.restarts += 1
        note = f"the VM restarted after Windows Update round {self.started}"
        self.run.reboots.count_reboot(self.run.result, rebooted, note)


@executes(WindowsUpdate)
async def windows_update(run: StepRun, action: WindowsUpdate) -> int | None:
    """Rounds of ``action.command`` (search, filter, download and install, as SYSTEM) until ``next_move`` says
    done or fail; a restart between rounds goes through ``RebootWatcher.restart_vm``."""
    rounds = _Rounds(run, action)
    while True:
        finished = await rounds.one()
        if finished is None:
            continue
        code, last = finished
        move = next_move(rounds.rounds, action.max_rounds)
        rounds.report(last, move)
        if move.action == "fail":
            raise StepFailed(Outcome.FAILED, f"Windows Update: {move.reason}", code)
        if move.action == "done":
            rounds.done(move)
            return code
        if move.action == "restart":
            await rounds.restart(move)
