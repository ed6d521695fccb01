"""The gateway's view of the worker groups' interests (``gateway.interests``), against a real
Redis of the test's own (it is FLUSHALLed) on the fake clock: unknown means publish every
event; a change arrives by notification, not by waiting for the next re-read."""

from __future__ import annotations

import asyncio
import logging
import time
import typing

import pytest
import redis.asyncio as aioredis
from redis import backoff
from redis.asyncio import retry

from gateway import interests
from shared import clock, keys, lifecycle
from shared import interests as shared_interests
from tests import servers

if typing.TYPE_CHECKING:
    import pathlib


class Forwarding:
    """The one part of ``EventPublisher`` the view sets: the events to publish."""

    def __init__(self) -> None:
        self.interests: frozenset[str] | None = frozenset({"stale"})


@pytest.fixture
def names(namespace: str) -> keys.RedisKeys:
    return keys.RedisKeys(namespace, "main")


@pytest.fixture
async def private(tmp_path: pathlib.Path) -> typing.AsyncIterator[aioredis.Redis]:
    server = servers.PrivateRedis(tmp_path)
    server.start()
    client = aioredis.Redis.from_url(server.url)
    yield client
    await client.aclose()
    server.stop()


class Running:
    def __init__(
        self, view: interests.InterestView, events: Forwarding, fake: clock.FakeClock
    ) -> None:
        self.view, self.events, self.clock = view, events, fake
        self.acks = 0


@pytest.fixture
async def running(private: aioredis.Redis, names: keys.RedisKeys) -> typing.AsyncIterator[Running]:
    async with clock.FakeClock() as fake:
        events = Forwarding()
        view = interests.InterestView(private, names, typing.cast("typing.Any", events), clock=fake)
        tasks = lifecycle.TaskGroup(logging.getLogger("test"))
        run = Running(view, events, fake)

        async def acknowledged() -> None:
            run.acks += 1

        view.on_applied = acknowledged

        async def start() -> None:
            view.start(tasks)

        await fake.spawn(start())
        assert await view.settled(5)
        yield run
        await tasks.close()


async def eventually(check: typing.Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_no_group_known_means_every_event_is_published(running: Running) -> None:
    assert running.events.interests is None
    assert running.view.acknowledged is None  # acknowledges every group: publishes all


async def test_a_group_that_starts_is_known_at_once_by_notification(
    private: aioredis.Redis, names: keys.RedisKeys, running: Running
) -> None:
    before = running.clock.monotonic()
    await shared_interests.announce(private, names, "default", ["MESSAGE_CREATE"], replace=True)
    await eventually(lambda: running.events.interests is not None, "the notification")
    assert running.events.interests == {"MESSAGE_CREATE"}
    await shared_interests.announce(
        private, names, "music", ["VOICE_STATE_UPDATE", "MESSAGE_CREATE"], replace=True
    )
    await eventually(lambda: len(running.events.interests or ()) == 2, "the second group")
    assert running.events.interests == {"MESSAGE_CREATE", "VOICE_STATE_UPDATE"}
    assert running.view.acknowledged == {
        "default": shared_interests.version(["MESSAGE_CREATE"]),
        "music": shared_interests.version(["MESSAGE_CREATE", "VOICE_STATE_UPDATE"]),
    }
    await eventually(lambda: running.acks >= 2, "each change acknowledged")
    assert running.clock.monotonic() == before  # not the periodic re-read: no time passed
    assert running.view.notifications >= 2


async def test_flushall_means_publish_everything_until_the_workers_announce_again(
    private: aioredis.Redis, names: keys.RedisKeys, running: Running
) -> None:
    await shared_interests.announce(private, names, "default", ["MESSAGE_CREATE"], replace=True)
    await eventually(lambda: running.events.interests is not None, "known")
    await private.flushall()
    reads = running.view.reads
    running.clock.advance(interests.BACKSTOP_INTERVAL)  # the re-read: no notification says it
    await eventually(lambda: running.view.reads > reads, "the re-read")
    await eventually(lambda: running.events.interests is None, "unknown after the FLUSHALL")
    # A replica re-announcing (adding, not replacing) makes it known again at once.
    await shared_interests.announce(private, names, "default", ["MESSAGE_CREATE"], replace=False)
    await eventually(lambda: running.events.interests == {"MESSAGE_CREATE"}, "known again")


async def test_a_group_without_its_marker_is_unknown(
    private: aioredis.Redis, names: keys.RedisKeys, running: Running
) -> None:
    # An evicted set, or one written by an older release: the index names it, the set does not
    # say it was announced.
    await shared_interests.announce(private, names, "default", ["MESSAGE_CREATE"], replace=True)
    await eventually(lambda: running.events.interests is not None, "known")
    await private.sadd(names.interest_groups(), "evicted")
    await private.sadd(names.interests("other"), "TYPING_START")
    await private.sadd(names.interest_groups(), "other")
    running.clock.advance(interests.BACKSTOP_INTERVAL)
    await eventually(lambda: running.events.interests is None, "unknown")


async def test_a_lost_subscription_publishes_everything_until_it_is_back(
    private: aioredis.Redis, names: keys.RedisKeys, running: Running
) -> None:
    await shared_interests.announce(private, names, "default", ["MESSAGE_CREATE"], replace=True)
    await eventually(lambda: running.events.interests is not None, "known")
    seen: list[frozenset[str] | None] = []

    async def watch() -> None:
        while True:
            if not seen or seen[-1] != running.events.interests:
                seen.append(running.events.interests)
            await asyncio.sleep(0)

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await private.client_kill_filter(_type="pubsub")
        # Notifications missed while it was down are caught up on re-subscribing.
        await eventually(lambda: None in seen, "unknown while unsubscribed")
        await eventually(lambda: running.events.interests is not None, "resubscribed")
    finally:
        watcher.cancel()
    assert running.events.interests == {"MESSAGE_CREATE"}


async def test_redis_away_at_a_read_keeps_the_view(
    names: keys.RedisKeys, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = aioredis.Redis(port=servers.free_port(), retry=retry.Retry(backoff.NoBackoff(), 0))
    events = Forwarding()
    view = interests.InterestView(
        nobody, names, typing.cast("typing.Any", events), clock=clock.SystemClock()
    )
    try:
        with caplog.at_level(logging.WARNING, logger="shardline.gateway.interests"):
            await view.refresh()
    finally:
        await nobody.aclose()
    assert events.interests == {"stale"}
    assert [r.getMessage() for r in caplog.records] == ["interests not read: keeping the view"]
