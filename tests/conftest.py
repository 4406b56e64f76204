from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.servers import LocalServers, Servers, from_environment, started_locally
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    given = from_environment()
    if given is not None:
        yield given
        return
    with started_locally() as (_local, started):
        yield started


@pytest.fixture(scope="module")
def private() -> Iterator[LocalServers]:
    """Servers of the requesting module alone: pausing, stopping or restarting them disturbs no other test."""
    with started_locally() as (local, _started):
        yield local


@pytest.fixture(scope="module")
async def stack(servers: Servers) -> AsyncIterator[Stack]:
    """The whole stack; minutes last one second so timeouts fire within a test."""
    running = Stack(servers, seconds_per_minute=1.0)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
