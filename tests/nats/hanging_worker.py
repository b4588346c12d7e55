"""A worker process for the kill -9 test: records each delivery, then hangs (as long training would)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.contracts.events import JobCancelRequested
from stratos_shared.service import ServiceRuntime
from stratos_shared.settings import StratosSettings


def main(log: Path) -> None:
    router = EventRouter("worker", ack_wait_s=1.5)

    @router.handler(consumes=JobCancelRequested, publishes=[], durable="hanging-worker")
    async def work(event: JobCancelRequested, ctx: HandlerContext) -> None:
        with log.open("a") as out:
            out.write(f"started {ctx.delivery}\n")
        await asyncio.sleep(3600)

    runtime = ServiceRuntime("worker", StratosSettings(), [router], tracing=False)
    asyncio.run(runtime.serve_forever())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
