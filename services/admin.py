"""Operator commands: `migrate`, `topics`, `rebuild`, `dead-letters`, `clock`, `credentials`."""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import sys
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from iotjobs.runtime import logs, pg, test_clock
from iotjobs.runtime.broker_credentials import SERVICE_USER, CredentialsDir, CredentialsError
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
    commands.add_parser("topics", help="create the Kafka topics", description="Create the Kafka topics.")
    commands.add_parser(
        "rebuild",
        help="replay the log into the read models (no projector may run)",
        description="Empty the read models and replay the log from its start.",
    )
    commands.add_parser(
        "dead-letters", help="print parked commands as JSON lines", description="Print every parked command."
    )
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
