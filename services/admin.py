"""iotjobs-admin: the operator's commands, in one place (each has its own --help)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from iotjobs.domain import validation
from iotjobs.domain.errors import DomainError
from iotjobs.runtime import execution_history, logs, pg, test_clock
from iotjobs.runtime.broker_credentials import SERVICE_USER, CredentialsDir, CredentialsError
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, ensure_topics, partitions_of, topic_specs
from services.projector.lag import PartitionLag, projector_lag
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


async def _history(settings: Settings, thing_name: str, job_id: str) -> list[dict[str, Any]]:
    """Read from PostgreSQL directly, like `rebuild`: it answers where control is down or signs requests,
    with the very query control's extension operation runs."""
    conn = await pg.connect(settings.pg_dsn)
    try:
        return await execution_history.entries(conn, thing_name, job_id)
    finally:
        await conn.close()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _history_table(entries: list[dict[str, Any]]) -> str:
    rows = [
        (
            str(e["executionNumber"]),
            datetime.fromtimestamp(e["at"], UTC).isoformat(timespec="milliseconds"),
            e["status"],
            e["cause"],
            str(e["versionNumber"]),
            orjson.dumps(e["statusDetails"], option=orjson.OPT_SORT_KEYS).decode(),
        )
        for e in entries
    ]
    return _table(("EXECUTION", "AT (UTC)", "STATUS", "CAUSE", "VERSION", "STATUS DETAILS"), rows)


async def _lag(settings: Settings) -> list[PartitionLag]:
    conn = await pg.connect(settings.pg_dsn)
    try:
        return await projector_lag(settings, conn)
    finally:
        await conn.close()


def _lag_table(lags: list[PartitionLag]) -> str:
    rows = [
        (str(x.partition), str(x.end_offset), str(x.checkpoint), str(x.records_behind), f"{x.seconds_behind:.1f}")
        for x in lags
    ]
    return _table(("PARTITION", "END OFFSET", "PROJECTED TO", "RECORDS BEHIND", "SECONDS BEHIND"), rows)


async def _list_topics(settings: Settings, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Each of the stack's topics that exists: its partitions and their end offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        listed = []
        for spec in topic_specs(settings):
            if spec.name not in existing:
                continue
            tps = await partitions_of(settings.kafka_bootstrap, spec.name, timeout)
            ends = await consumer.end_offsets(tps)
            listed.append({"topic": spec.name, "partitions": len(tps), "end_offsets": [ends[tp] for tp in tps]})
        return listed
    finally:
        await consumer.stop()


def _topics_table(topics: list[dict[str, Any]]) -> str:
    rows = [
        (t["topic"], str(t["partitions"]), str(sum(t["end_offsets"])), " ".join(map(str, t["end_offsets"])))
        for t in topics
    ]
    return _table(("TOPIC", "PARTITIONS", "RECORDS", "END OFFSETS (BY PARTITION)"), rows)


def _json_lines(items: Sequence[Any]) -> str:
    return "".join(orjson.dumps(item).decode() + "\n" for item in items)


def _checked(check: Any, what: str) -> Any:
    """An argparse type from a domain validator: the same rules, and message, as the HTTP planes."""

    def parse(text: str) -> str:
        try:
            return str(check(text))
        except DomainError as err:
            raise argparse.ArgumentTypeError(err.message) from None

    parse.__name__ = what
    return parse


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


def _credentials(args: argparse.Namespace) -> None:
    store = CredentialsDir(Path(args.dir), args.owner)
    try:
        if args.action == "init":
            written = store.init(args.host or ["localhost", "127.0.0.1"])
            print(f"{store.path}: {', '.join(written)}")
            print(f"services connect as '{SERVICE_USER}' with the password in {store.service_password_file}")
        elif args.action == "certificate":
            cert, key = store.issue_certificate(args.thing)
            print(f"certificate {cert}\nkey         {key}\nca          {store.ca}")
        elif args.action == "password":
            password = args.password or secrets.token_urlsafe(18)
            store.set_password(args.thing, password)
            print(password)
            print(f"written to {store.passwd}; reload the broker to apply it", file=sys.stderr)
        elif args.action == "access-key":
            key_id, secret = store.new_access_key(args.thing)
            print(f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}")
            print(f"added to {store.access_keys}; restart control and dataplane to accept it", file=sys.stderr)
        elif args.action == "revoke":
            if not store.remove(args.thing):
                raise SystemExit(f"{args.thing} has no password or certificate in {store.path}")
            print(f"{args.thing}: password and certificate files removed; reload the broker to apply it")
        else:
            print("\n".join(store.usernames()))
    except CredentialsError as err:
        raise SystemExit(str(err)) from None


def parser() -> argparse.ArgumentParser:
    defaults = Settings.from_env()
    parser = argparse.ArgumentParser(prog="iotjobs-admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("migrate", help="apply the read models' migrations", description="Apply the migrations.")
    topics = commands.add_parser(
        "topics",
        help="create the Kafka topics, or list them with their partitions and end offsets",
        description="Create the Kafka topics iotjobs needs (those missing); with --list, list the topics instead.",
    )
    topics.add_argument(
        "--list", action="store_true", help="list the topics with their partitions and end offsets, create nothing"
    )
    topics.add_argument("--json", action="store_true", help="with --list: one JSON object per topic")
    commands.add_parser(
        "rebuild",
        help="replay the log into the read models (no projector may run)",
        description="Empty the read models and replay the log from its start.",
    )
    commands.add_parser(
        "dead-letters", help="print parked commands as JSON lines", description="Print every parked command."
    )
    history = commands.add_parser(
        "history",
        help="show every transition of a thing's executions of a job",
        description=(
            "Show every transition of every execution number of JOB on THING, oldest first: when, its status, "
            "its cause (rollout, retry, membership, device, timer, operator, abort), its versionNumber and "
            "statusDetails. Reads the read models in PostgreSQL (IOTJOBS_PG_DSN): it may lag the latest device "
            "update by the projector's lag."
        ),
    )
    history.add_argument("thing", type=_checked(validation.check_thing_name, "thing name"), help="the thing's name")
    history.add_argument("job", type=_checked(validation.check_job_id, "job id"), help="the job's id")
    history.add_argument("--json", action="store_true", help="one JSON object per transition (JSON lines)")
    lag = commands.add_parser(
        "lag",
        help="show how far the projector is behind the event log, per partition",
        description=(
            "Show the projector's lag per partition of the events topic: the topic's end offset, the offset "
            "projected to (projector_offsets), the records between them, and the seconds since the oldest "
            "record not yet projected was written (0 when caught up)."
        ),
    )
    lag.add_argument("--json", action="store_true", help="one JSON object per partition (JSON lines)")
    clock = commands.add_parser(
        "clock",
        help="show or move the test clock",
        description="Show the test clock's offset, or move every service's clock with --advance.",
    )
    clock.add_argument("--advance", type=duration, help="how far to move forward (90s, 30m, 2h, 7d)")
    creds = commands.add_parser(
        "credentials",
        help="certificates and passwords for the broker, devices and HTTPS",
        description=(
            "init: the CA, the server certificate (for --host names), the broker's ACL and the services' "
            "identity; certificate THING: a device certificate (common name THING); password THING: set a "
            "device password (printed); revoke THING: remove both; access-key NAME: a SigV4 key pair for the HTTP "
            "planes (printed, added to access-keys); list: the password file's users. "
            "Reload the broker after a password change or a revocation."
        ),
    )
    creds.add_argument("action", choices=["init", "certificate", "password", "revoke", "access-key", "list"])
    creds.add_argument("thing", nargs="?", help="a thing name (certificate, password, revoke), a key's (access-key)")
    creds.add_argument(
        "--dir",
        default=defaults.credentials_dir,
        help=f"the credentials directory (default: $IOTJOBS_CREDENTIALS_DIR, else {Settings.credentials_dir})",
    )
    creds.add_argument(
        "--host",
        action="append",
        help="init: a DNS name or IP address the server certificate is for (repeat; default localhost, 127.0.0.1)",
    )
    creds.add_argument("--password", help="password: use this password instead of a random one")
    creds.add_argument(
        "--owner",
        type=int,
        default=int(defaults.credentials_owner) if defaults.credentials_owner else None,
        help="run as root: the uid given the files the services read (default: $IOTJOBS_CREDENTIALS_OWNER)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.command == "credentials":
        if args.action in ("certificate", "password", "revoke", "access-key") and not args.thing:
            arguments.error(f"credentials {args.action} needs a thing name")
        _credentials(args)
        return
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "clock":
        offset = asyncio.run(_clock(settings, args.advance))
        print(f"test clock offset: {offset:.0f} s")
    elif args.command == "migrate":
        applied = asyncio.run(pg.migrate(settings.pg_dsn))
        print(f"migrations applied: {', '.join(applied) or 'none needed'}")
    elif args.command == "topics" and args.list:
        listed = asyncio.run(_list_topics(settings))
        sys.stdout.write(_json_lines(listed) if args.json else _topics_table(listed) + "\n")
    elif args.command == "topics":
        asyncio.run(ensure_topics(settings))
        print("topics ready")
    elif args.command == "history":
        entries = asyncio.run(_history(settings, args.thing, args.job))
        if not entries:
            raise SystemExit(f"thing {args.thing} never had an execution of job {args.job}")
        sys.stdout.write(_json_lines(entries) if args.json else _history_table(entries) + "\n")
    elif args.command == "lag":
        lags = asyncio.run(_lag(settings))
        sys.stdout.write(_json_lines([x.to_dict() for x in lags]) if args.json else _lag_table(lags) + "\n")
    elif args.command == "dead-letters":
        count = asyncio.run(_dead_letters(settings))
        print(f"{count} parked command(s)", file=sys.stderr)
    else:
        count = asyncio.run(_rebuild(settings))
        print(f"read models rebuilt from {count} events")


if __name__ == "__main__":
    main()
