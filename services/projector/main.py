"""The projector service: folds the event log into the read models until stopped."""

from __future__ import annotations

import asyncio
import signal

from iotjobs.runtime import eventloop, logs, pg, security
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import ensure_topics
from services.projector.projector import Projector, connect


async def run(settings: Settings) -> None:
    await ensure_topics(settings)
    await pg.migrate(settings.pg_dsn)
    conn = await connect(settings)
    projector = Projector(settings, conn)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await projector.start()
    log = logs.get("iotjobs.projector")
    log.info("projector running")
    stopping = asyncio.ensure_future(stop.wait())
    try:
        # A projecting loop that dies (an event it has no read model for) ends the process, non-zero, so a
        # supervisor restarts it and the failure is seen, rather than read models silently standing still.
        await asyncio.wait([stopping, projector.running], return_when=asyncio.FIRST_COMPLETED)
        if projector.running.done() and not projector.running.cancelled() and projector.running.exception():
            log.error("the projecting loop failed", exc_info=projector.running.exception())
            raise SystemExit(1)
    finally:
        stopping.cancel()
        await projector.stop()
        await conn.close()


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    security.check_at_start(settings, "projector")
    eventloop.install(settings)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
