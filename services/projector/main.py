"""The projector service: folds the event log into the read models until stopped, and serves `/health` and
`/metrics` on IOTJOBS_PROJECTOR_HOST:IOTJOBS_PROJECTOR_PORT."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from iotjobs.runtime import eventloop, logs, pg, security
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import ensure_topics
from services.projector import observed
from services.projector.projector import Projector, connect


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log = logs.get("iotjobs.projector")
    # Served from the start: /health says 503 until the projecting loop runs, /metrics answers throughout.
    runner = web.AppRunner(served := observed.app(observed.Lag(settings, observed.Progress())), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.projector_host, settings.projector_port).start()
    rollouts = observed.register_rollouts()
    try:
        await ensure_topics(settings)
        await pg.migrate(settings.pg_dsn)
        conn = await connect(settings)
        projector = Projector(settings, conn)
        lag = served[observed.LAG_KEY]
        lag.progress = projector.progress
        await projector.start()
        served[observed.RUNNING_KEY].append(projector.running)
        followers = [
            asyncio.create_task(observed.follow_lag(lag, projector.consumer, projector.topic), name="projector-lag"),
            asyncio.create_task(observed.follow_rollouts(settings, rollouts), name="projector-rollouts"),
        ]
        log.info("projector running", port=settings.projector_port)
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
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            await projector.stop()
            await conn.close()
    finally:
        await runner.cleanup()


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    security.check_at_start(settings, "projector")
    eventloop.install(settings)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
