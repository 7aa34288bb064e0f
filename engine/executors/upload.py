"""The ``Upload`` executor: one file written on the VM."""

from __future__ import annotations

from aibx.engine.events import ActionStarted, Outcome
from aibx.engine.executors.base import StepRun, executes
from aibx.engine.reboots import MAX_DROPS_PER_ACTION
from aibx.engine.session import StepFailed
from aibx.engine.transports.base import ConnectionLost, RemoteFileError, TransportError
from aibx.plan import Upload


@executes(Upload)
async def upload(run: StepRun, action: Upload) -> None:
    """Write the file; a dropped connection writes it again from the start (writing a file is idempotent)."""
    session, ref, result = run.session, run.ref, run.result
    data = run.payload(action.content)
    session.emit(
        ActionStarted(
            session.target, step=ref, kind="upload", text=action.remote_path, detail=action.content.describe()
        )
    )
    total = len(data) if isinstance(data, bytes) else None
    for drops in range(1, MAX_DROPS_PER_ACTION + 2):
        meter = session.transfer_meter(ref, "upload", action.remote_path, total)
        try:
            await session.guarded(
                session.live().put(
                    data, action.remote_path, action.mode, on_progress=meter.update, exclusive=action.temporary
                )
            )
            meter.finish()
            return
        except RemoteFileError as exc:
            raise StepFailed(Outcome.FAILED, f"cannot write {exc}") from None
        except ConnectionLost as exc:
            if drops > MAX_DROPS_PER_ACTION:
                raise StepFailed(
                    Outcome.CONNECTION_LOST,
                    f"the connection dropped {drops} times while writing {action.remote_path}: {exc}",
                ) from None
            rebooted = await run.reboots.ride_out(ref, str(exc), f"an upload to {action.remote_path}")
            run.reboots.count_reboot(result, rebooted, f"the VM restarted during the upload to {action.remote_path}")
            again = f"writing {action.remote_path} again, from the start (the first attempt was cut off)"
            session.notice(ref, again, "warning")
        except TransportError as exc:
            raise StepFailed(Outcome.FAILED, f"cannot write {action.remote_path}: {exc}") from None
