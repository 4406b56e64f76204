"""The execution history's fold against a real PostgreSQL: one row per transition, a deletion keeping what the
execution had, and a replay of the same events writing nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from iotjobs.domain import thing
from iotjobs.runtime import execution_history, pg
from services.projector import folds
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


@pytest.fixture
async def conn(servers: Servers) -> AsyncIterator[asyncpg.Connection]:
    name = f"h{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(servers.pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await pg.migrate(servers.pg_dsn_for(name))
    connection = await pg.connect(servers.pg_dsn_for(name))
    try:
        yield connection
    finally:
        await connection.close()


def _updated(n: int, status: str, details: dict[str, str], version: int, at: float, cause: str) -> Any:
    return thing.ExecutionUpdated("t1", "j1", n, status, details, version, at, T0, None, None, cause)


LOG = [
    thing.ExecutionQueued("t1", "j1", 1, 0, T0, "{}"),
    _updated(1, "IN_PROGRESS", {"step": "a"}, 2, T0 + 1, "start-next"),
    _updated(1, "FAILED", {"step": "b"}, 3, T0 + 2, "update"),
    thing.ExecutionQueued("t1", "j1", 2, 1, T0 + 3, "{}", retry_attempt=1),
    thing.ExecutionQueued("t1", "j2", 1, 2, T0 + 3, "{}", joined=True),
    _updated(2, "CANCELED", {}, 2, T0 + 4, "cancel"),
    thing.ExecutionDeleted("t1", "j1", 1, T0 + 5),
    thing.ExecutionUpdated("t1", "j2", 1, "REMOVED", {}, 2, T0 + 6, None, None, None, "removed"),
    thing.ExecutionDeleted("t1", "j1", 2),  # logged before deletions carried their time
]


async def _fold(conn: asyncpg.Connection, events: list[Any]) -> None:
    async with conn.transaction():
        for seq, event in enumerate(events, start=10):
            await folds.apply_history(conn, event, seq)


async def test_each_transition_is_a_row_and_a_deletion_keeps_what_the_execution_had(
    conn: asyncpg.Connection,
) -> None:
    await _fold(conn, LOG)
    seen = [
        (e["executionNumber"], e["status"], e["cause"], e["statusDetails"], e["versionNumber"], e["at"])
        for e in await execution_history.entries(conn, "t1", "j1")
    ]
    assert seen == [
        (1, "QUEUED", "rollout", {}, 1, T0),
        (1, "IN_PROGRESS", "device", {"step": "a"}, 2, T0 + 1),
        (1, "FAILED", "device", {"step": "b"}, 3, T0 + 2),
        (2, "QUEUED", "retry", {}, 1, T0 + 3),
        (2, "CANCELED", "operator", {}, 2, T0 + 4),
        (1, "DELETED", "operator", {"step": "b"}, 3, T0 + 5),
        (2, "DELETED", "operator", {}, 2, T0 + 4),
    ]
    other = await execution_history.entries(conn, "t1", "j2")
    assert [(e["status"], e["cause"]) for e in other] == [("QUEUED", "membership"), ("REMOVED", "membership")]
    assert await execution_history.entries(conn, "t1", "never") == []
    assert await execution_history.entries(conn, "t2", "j1") == []


async def test_a_replay_of_the_same_events_writes_nothing_twice(conn: asyncpg.Connection) -> None:
    await _fold(conn, LOG[:4])
    await _fold(conn, LOG)  # a batch projected again after a crash, and more
    rows = await conn.fetch("SELECT * FROM execution_history ORDER BY thing_name, seq")
    await conn.execute("TRUNCATE execution_history")
    await _fold(conn, LOG)
    assert await conn.fetch("SELECT * FROM execution_history ORDER BY thing_name, seq") == rows
    assert len(rows) == len(LOG)
