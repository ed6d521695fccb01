"""A new session is recorded even when Redis does not take it at READY (``gateway/sessions.py``).

A review of the soak's fixes: a READY while Redis was away left the old session's record; the
new session's checkpoints were refused (another session's record) and a successor RESUMEd the
old session, failed and IDENTIFYed. A private Redis with its append-only file keeps the old
record across the outage, as production's does.
"""

from __future__ import annotations

import asyncio
import typing

import pytest
import redis.asyncio as aioredis

from gateway import sessions
from shared import keys
from tests import servers

if typing.TYPE_CHECKING:
    import pathlib


class Persistent(typing.NamedTuple):
    server: servers.PrivateRedis
    store: sessions.SessionStore


@pytest.fixture
async def persistent(tmp_path: pathlib.Path) -> typing.AsyncIterator[Persistent]:
    """A session store on a private Redis with its append-only file, which a test stops."""
    private = servers.PrivateRedis(tmp_path, persist=True)
    private.start()
    client = aioredis.Redis.from_url(private.url)
    try:
        yield Persistent(private, sessions.SessionStore(client, keys.RedisKeys("t", "main")))
    finally:
        await client.aclose()
        private.stop()


async def test_a_session_started_while_redis_is_down_is_recorded_once_it_is_back(
    persistent: Persistent,
) -> None:
    private, store = persistent
    await store.start(0, 1, "old", "wss://old", 0)
    private.stop()
    recording = asyncio.create_task(
        store.start_until_taken(0, 1, "new", "wss://new", current=lambda: True)
    )
    await asyncio.sleep(1.0)  # refused at least once
    assert not recording.done()
    private.start()  # the old record is still there (append-only file)
    await asyncio.wait_for(recording, 15)
    stored = await store.load(0, 1)
    assert stored is not None
    assert stored.session_id == "new"


async def test_a_session_the_shard_no_longer_runs_is_not_written_over_a_newer_one(
    persistent: Persistent,
) -> None:
    private, store = persistent
    running = ["mine"]
    private.stop()
    recording = asyncio.create_task(
        store.start_until_taken(0, 1, "mine", "wss://mine", current=lambda: running == ["mine"])
    )
    await asyncio.sleep(1.0)
    running[:] = []  # the shard was handed over; its successor records its own session
    private.start()
    await store.start(0, 1, "successor", "wss://successor", 0)
    await asyncio.wait_for(recording, 15)
    stored = await store.load(0, 1)
    assert stored is not None
    assert stored.session_id == "successor"
