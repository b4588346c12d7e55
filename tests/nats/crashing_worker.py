"""TEST DOUBLE of a server's trainer whose process dies on every delivery of its work (as an out-of-memory kill or a
crash in native code would): it records the delivery, then SIGKILLs itself before it can ack, nak or fail the job."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.bus.names import server_token, work_subject
from stratos_shared.contracts.events import TrainingAssigned
from stratos_shared.service import ServiceRuntime
from stratos_shared.settings import StratosSettings

MAX_DELIVER = 3


def main(log: Path, server_id: str) -> None:
    router = EventRouter("trainer", max_deliver=MAX_DELIVER, ack_wait_s=1.0)

    @router.handler(
        consumes=TrainingAssigned,
        publishes=[],
        durable=f"trainer-{server_token(server_id)}",
        subject=work_subject("train", server_id),
    )
    async def crash(event: TrainingAssigned, ctx: HandlerContext) -> None:
        with log.open("a") as out:
            out.write(f"delivery {ctx.delivery} of {event.job_id}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    runtime = ServiceRuntime("trainer", StratosSettings(), [router], tracing=False, creates_infrastructure=False)
    asyncio.run(runtime.serve_forever())


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
