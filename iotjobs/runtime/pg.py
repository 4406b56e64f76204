"""PostgreSQL access shared by every service: the pool, the jsonb codec and the migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
MIGRATION_LOCK = 7_001_001


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads
    )


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, **kwargs)
    await _init(conn)
    return conn


async def _nothing_to_reset(_conn: asyncpg.Connection) -> None:
    """The pool's users run read statements and never change session state (no SET, LISTEN or advisory
    lock), so the reset query asyncpg sends on every release by default, a round trip per request, has
    nothing to undo. asyncpg still rolls back a transaction left open before calling this."""


async def pool(dsn: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn, init=_init, reset=_nothing_to_reset, min_size=min_size, max_size=max_size)


async def migrate(dsn: str, directory: Path = MIGRATIONS) -> list[str]:
    """Apply the SQL files not yet applied, in name order; returns their names."""
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        applied = []
        for path in sorted(directory.glob("*.sql")):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied.append(path.name)
        return applied
    finally:
        await conn.close()
