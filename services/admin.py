"""Operator commands: `migrate`, `topics`, `rebuild`."""

from __future__ import annotations

import argparse
import asyncio

from iotjobs.runtime import logs, pg
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import ensure_topics
from services.projector.projector import rebuild


async def _rebuild(settings: Settings) -> int:
    conn = await pg.connect(settings.pg_dsn)
    try:
        return await rebuild(settings, conn)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="iotjobs-admin")
    parser.add_argument("command", choices=["migrate", "topics", "rebuild"])
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if args.command == "migrate":
        applied = asyncio.run(pg.migrate(settings.pg_dsn))
        print(f"migrations applied: {', '.join(applied) or 'none needed'}")
    elif args.command == "topics":
        asyncio.run(ensure_topics(settings))
        print("topics ready")
    else:
        count = asyncio.run(_rebuild(settings))
        print(f"read models rebuilt from {count} events")


if __name__ == "__main__":
    main()
