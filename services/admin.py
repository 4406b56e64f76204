"""Operator commands: `migrate`, `topics`, `rebuild`, `dead-letters`, `clock`."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from iotjobs.runtime import logs, pg, test_clock
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, ensure_topics, partitions_of
from services.projector.projector import rebuild


async def _rebuild(settings: Settings) -> int:
    conn = await pg.connect(settings.pg_dsn)
    try:
        return await rebuild(settings, conn)
    finally:
        await conn.close()


async def _dead_letters(settings: Settings, timeout: float = 30.0) -> int:
    """Print every parked command as a JSON line: where it came from, why, and the record itself."""
    topic = Topics.of(settings).dead_letters
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(settings.kafka_bootstrap, topic, timeout)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        count = 0
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout:.0f}s")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    sys.stdout.write(orjson.dumps(_parked(record)).decode() + "\n")
                    count += 1
        return count
    finally:
        await consumer.stop()


def _parked(record: Any) -> dict[str, Any]:
    headers = {name: value.decode(errors="replace") for name, value in record.headers}
    value: bytes = record.value or b""
    try:
        shown: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        shown = {"base64": base64.b64encode(value).decode()}
    return {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp,
        "key": record.key.decode(errors="replace") if record.key is not None else None,
        **headers,
        "record": shown,
    }


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """`90`, `90s`, `30m`, `2h` or `7d` as seconds (real ones: IOTJOBS_SECONDS_PER_MINUTE does not apply)."""
    unit = DURATION_UNITS.get(text[-1:])
    try:
        seconds = float(text[:-1]) * unit if unit else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration such as 90s, 30m, 2h or 7d") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be a positive duration")
    return seconds


async def _clock(settings: Settings, advance: float | None) -> float:
    """The test clock's offset, after moving it `advance` seconds forward if asked."""
    if not test_clock.enabled(settings):
        raise SystemExit("the test clock is off: set IOTJOBS_TEST_CLOCK=on for every service and for this command")
    await ensure_topics(settings)
    offset = await test_clock.current_offset(settings)
    if advance is not None:
        offset += advance
        await test_clock.publish(settings, offset)
    return offset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="iotjobs-admin", description=__doc__)
    parser.add_argument(
        "command",
        choices=["migrate", "topics", "rebuild", "dead-letters", "clock"],
        help="clock: show the test clock's offset, or move every service's clock with --advance",
    )
    parser.add_argument("--advance", type=duration, help="clock: how far to move forward (90s, 30m, 2h, 7d)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if args.command == "clock":
        offset = asyncio.run(_clock(settings, args.advance))
        print(f"test clock offset: {offset:.0f} s")
    elif args.command == "migrate":
        applied = asyncio.run(pg.migrate(settings.pg_dsn))
        print(f"migrations applied: {', '.join(applied) or 'none needed'}")
    elif args.command == "topics":
        asyncio.run(ensure_topics(settings))
        print("topics ready")
    elif args.command == "dead-letters":
        count = asyncio.run(_dead_letters(settings))
        print(f"{count} parked command(s)", file=sys.stderr)
    else:
        count = asyncio.run(_rebuild(settings))
        print(f"read models rebuilt from {count} events")


if __name__ == "__main__":
    main()
