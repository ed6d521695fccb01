"""Writing each shard's confirmed seq to Redis (``gateway.checkpoints``): only what changed,
said once when Redis is away, and nothing lost when it is back. A real ``SessionStore`` on
the real Redis; the publisher is a stand-in that reports confirmed positions."""

from __future__ import annotations

import logging
import typing

import pytest
import redis.asyncio as aioredis
from redis import backoff
from redis.asyncio import retry

from gateway import checkpoints, sessions
from shared import keys
from tests import netproxy, servers

COUNT: typing.Final = 4


def mark(seq: int, session_id: str = "s") -> sessions.Checkpoint:
    return sessions.Checkpoint(session_id, seq, "wss://resume.example", COUNT)


class ConfirmedPositions:
    """What ``CheckpointWriter`` needs of an ``EventPublisher``: its confirmed positions, and
    a drain and close that the test can watch."""

    def __init__(self) -> None:
        self.marks: dict[int, sessions.Checkpoint] = {}
        self.calls: list[str] = []
        #: What the broker confirms while a drain waits.
        self.confirmed_in_drain: dict[int, sessions.Checkpoint] = {}

    def checkpoints(self) -> dict[int, sessions.Checkpoint]:
        return dict(self.marks)

    async def drain(self, timeout: float, shard_id: int | None = None) -> bool:
        assert shard_id is None
        self.calls.append(f"drain {timeout}")
        self.marks.update(self.confirmed_in_drain)
        return True

    async def close(self) -> None:
        self.calls.append("close")


class Writer(typing.NamedTuple):
    writer: checkpoints.CheckpointWriter
    events: ConfirmedPositions
    store: sessions.SessionStore


def make_writer(
    redis: aioredis.Redis,
    names: keys.RedisKeys,
    clock: typing.Callable[[], float] | None = None,
) -> Writer:
    events = ConfirmedPositions()
    store = sessions.SessionStore(redis, names)
    # The stand-in has exactly the part of EventPublisher the writer uses.
    writer = checkpoints.CheckpointWriter(
        typing.cast("typing.Any", events), store, clock=clock or (lambda: 0.0)
    )
    return Writer(writer, events, store)


@pytest.fixture
def names(namespace: str) -> keys.RedisKeys:
    return keys.RedisKeys(namespace, "main")


async def stored_seq(redis: aioredis.Redis, names: keys.RedisKeys, shard_id: int) -> int | None:
    seq = await redis.hget(names.session(shard_id, COUNT), "seq")
    return None if seq is None else int(seq)


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_changed_positions_are_written_and_every_record_when_redis_forgot_one(
    redis_client: aioredis.Redis, names: keys.RedisKeys, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    writer, events, store = make_writer(redis_client, names, clock)
    events.marks = {0: mark(10), 1: mark(20)}
    await writer.write()
    assert await stored_seq(redis_client, names, 0) == 10
    assert await stored_seq(redis_client, names, 1) == 20
    loaded = await store.load(0, COUNT)
    assert loaded is not None
    assert (loaded.session_id, loaded.seq) == ("s", 10)
    # Both records go away behind the writer's back (Redis restarted empty); an unchanged
    # position is not written at the next interval...
    await redis_client.delete(names.session(0, COUNT), names.session(1, COUNT))
    await writer.write()
    assert await stored_seq(redis_client, names, 0) is None
    # ...but the first that moves is found missing and written whole, and then every other.
    events.marks[1] = mark(25)
    with caplog.at_level(logging.WARNING, logger="shardline.gateway.checkpoints"):
        await writer.write()
    assert await stored_seq(redis_client, names, 1) == 25
    assert "session records were missing in Redis" in caplog.text
    await writer.write()
    assert await stored_seq(redis_client, names, 0) == 10
    loaded = await store.load(0, COUNT)
    assert loaded is not None
    assert loaded.resume_url == "wss://resume.example"
    assert writer.rewritten == 1
    assert writer.redis_up


async def test_every_record_is_refreshed_even_when_nothing_moves(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    """A quiet shard's record expired SESSION_TTL after its last event, and a Redis that
    restarted empty while a broker outage confirmed nothing lost the records for good (soak
    seed 457115): every REFRESH seconds each record is written, moved or not."""
    clock = Clock()
    writer, events, _ = make_writer(redis_client, names, clock)
    events.marks = {0: mark(10)}
    await writer.write()
    await redis_client.delete(names.session(0, COUNT))
    clock.now += checkpoints.INTERVAL
    await writer.write()
    assert await stored_seq(redis_client, names, 0) is None  # not yet
    clock.now += checkpoints.REFRESH
    await writer.write()
    assert await stored_seq(redis_client, names, 0) == 10
    assert await redis_client.ttl(names.session(0, COUNT)) > keys.SESSION_TTL - 5


async def test_redis_away_is_said_once_and_the_positions_are_written_when_it_is_back(
    redis_client: aioredis.Redis, names: keys.RedisKeys, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = netproxy.TcpProxy(servers.REDIS_PORT)
    await proxy.start()
    # No retries: the outage is seen on the first try, as a down Redis, not after back-offs.
    through_proxy = aioredis.Redis(port=proxy.port, retry=retry.Retry(backoff.NoBackoff(), 0))
    try:
        writer, events, _ = make_writer(through_proxy, names)
        events.marks = {0: mark(1)}
        await writer.write()
        assert await stored_seq(redis_client, names, 0) == 1

        await proxy.cut()
        caplog.set_level(logging.INFO, logger="shardline.gateway.checkpoints")
        events.marks = {0: mark(2)}
        await writer.write()
        assert not writer.redis_up
        events.marks = {0: mark(3), 1: mark(7)}
        await writer.write()
        assert not writer.redis_up
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage() for r in warnings] == ["Redis unavailable: checkpoints not saved"]
        assert await stored_seq(redis_client, names, 0) == 1

        await proxy.restore()
        await writer.write()
        assert writer.redis_up
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
            "Redis available again"
        ]
        # What changed while Redis was away was never taken for written.
        assert await stored_seq(redis_client, names, 0) == 3
        assert await stored_seq(redis_client, names, 1) == 7
    finally:
        await through_proxy.aclose()
        await proxy.close()


async def test_finish_writes_what_the_last_drain_confirmed_then_closes(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    writer, events, _ = make_writer(redis_client, names)
    events.marks = {0: mark(5)}
    await writer.write()
    events.confirmed_in_drain = {0: mark(9), 2: mark(4)}
    await writer.finish()
    assert events.calls == ["drain 10", "close"]
    assert await stored_seq(redis_client, names, 0) == 9
    assert await stored_seq(redis_client, names, 2) == 4


async def test_a_position_of_another_session_does_not_overwrite_the_stored_one(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    """A stale writer (its shard already RESUMEd or re-IDENTIFYd elsewhere) is refused by the
    store; the writer still counts Redis as up."""
    writer, events, store = make_writer(redis_client, names)
    await store.start(0, COUNT, "newer", "wss://resume.example", 50)
    events.marks = {0: mark(60, session_id="older")}
    await writer.write()
    loaded = await store.load(0, COUNT)
    assert loaded is not None
    assert (loaded.session_id, loaded.seq) == ("newer", 50)
    assert writer.redis_up


async def test_a_session_stored_before_keys_had_hash_tags_is_still_resumed(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    store = sessions.SessionStore(redis_client, names)
    await redis_client.hset(
        names.legacy_session(2, COUNT),
        mapping={"session_id": "old", "seq": 41, "resume_url": "wss://r", "shard_count": COUNT},
    )
    loaded = await store.load(2, COUNT)
    assert loaded is not None
    assert (loaded.session_id, loaded.seq) == ("old", 41)
    # The first checkpoint writes the tagged key; the tagged one wins from then on.
    await store.checkpoint({2: sessions.Checkpoint("old", 42, "wss://r", COUNT)})
    assert await stored_seq(redis_client, names, 2) == 42
