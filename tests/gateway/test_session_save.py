"""A gateway SIGTERMed while Redis is down still leaves its sessions to its successor.

Soak seed 2 found the gateway closing its shards, failing once to save their sessions and
exiting: the successor IDENTIFYed and what Discord dispatched in between was lost. The stop now
waits (within its grace, ``gateway.session_save``) for Redis to take the sessions. Real
gateway processes against the Discord emulator and a private Redis, killed as the drain
begins and started again, empty, 2 s later.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import typing

import redis.asyncio as aioredis
from redis import backoff
from redis.asyncio import retry

from gateway import session_save, sessions
from shared import clock as clock_module
from shared import interests as shared_interests
from shared import keys
from tests import servers
from tests.gateway.conftest import Stack, stop_process

if typing.TYPE_CHECKING:
    import pathlib

    import pytest

    from tests.gateway.conftest import EventSink


def contents(sink: EventSink) -> collections.Counter[str]:
    return collections.Counter(e["d"]["content"] for e in sink.of("MESSAGE_CREATE"))


async def test_sigterm_while_redis_is_down_saves_the_session_and_the_successor_resumes(
    stack: Stack, tmp_path: pathlib.Path
) -> None:
    private = servers.PrivateRedis(tmp_path)
    private.start()
    client = aioredis.Redis.from_url(private.url)
    faulty = Stack(
        stack.discord, stack.namespace, stack.amqp_url, private.url, client, stack.connection,
        stack.mongo_url,
    )  # fmt: skip
    discord = stack.discord
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("u")
    sink = await faulty.listen(["MESSAGE_CREATE"])
    sent: list[str] = []

    def say(text: str) -> None:
        discord.send_message(channel_id, user, text)
        sent.append(text)

    first = second = None
    try:
        first = faulty.spawn(SHARD_COUNT="1", SHARD_IDS="0")
        await discord.wait_for(lambda: discord.connected_shards() == [0], timeout=30)
        await asyncio.sleep(2.5)  # the gateway reads interests every 2 s
        for index in range(5):
            say(f"before{index}")
        await discord.wait_for(lambda: len(contents(sink)) == 5, timeout=15, what="5 events")
        private.stop()  # kill -9: it comes back empty
        stopping = asyncio.create_task(stop_process(first))
        await asyncio.sleep(2.0)
        private.start()
        first_log = await stopping
        assert first.returncode == 0, first_log
        for index in range(5):  # dispatched into the session while nobody holds it
            say(f"between{index}")
        # What the empty Redis lost besides the session: the worker group's interests.
        await client.aclose()
        client = aioredis.Redis.from_url(private.url)
        await shared_interests.announce(
            client, faulty.keys, "default", ["MESSAGE_CREATE"], replace=True
        )
        second = faulty.spawn(SHARD_COUNT="1", SHARD_IDS="0")
        await discord.wait_for(
            lambda: len(discord.records.resumes) >= 1, timeout=30, what="the successor's RESUME"
        )
        await discord.wait_for(
            lambda: set(contents(sink)) >= set(sent), timeout=30, what="every message"
        )
        assert all(r.accepted for r in discord.records.resumes)
        assert len([i for i in discord.records.identifies if i.accepted]) == 1, (
            "only the first gateway identified"
        )
        await stop_process(second)
        second = None
        # Said once, and not that the grace ran out; no session id in what it said.
        assert first_log.count("Redis unavailable: stopping shards wait for it") == 1, first_log
        assert "stop grace ended" not in first_log
        ours = [line for line in first_log.splitlines() if "gateway.session_save" in line]
        assert ours
        assert not any(discord.records.resumes[0].session_id in line for line in ours)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        await client.aclose()
        private.stop()


async def test_when_the_grace_ends_first_the_stop_goes_on_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "shardline.gateway.session_save")
    # Nothing listens: refused at once (no retries of redis-py's own, which sleep for real).
    client = aioredis.Redis(port=servers.free_port(), retry=retry.Retry(backoff.NoBackoff(), 0))
    store = sessions.SessionStore(client, keys.RedisKeys("session-save", "main"))
    mark = sessions.Checkpoint("secret-session-id", 42, "wss://resume.example", 1)
    try:
        async with clock_module.FakeClock() as clock:
            saver = session_save.SessionSaver(store, clock=clock)
            start = clock.monotonic()
            saved = await asyncio.gather(
                *(clock.spawn(saver.save(s, mark, saver.deadline())) for s in (0, 1))
            )
            assert saved == [False, False]
            assert clock.monotonic() - start == session_save.SAVE_GRACE
    finally:
        await client.aclose()
    messages = [r.getMessage() for r in caplog.records]
    assert (
        messages.count("Redis unavailable: stopping shards wait for it to take their sessions") == 1
    )
    assert sorted(
        r.shard
        for r in caplog.records
        if "stop grace ended" in r.getMessage()  # type: ignore[attr-defined]
    ) == [0, 1]
    assert not any("secret-session-id" in str(r.__dict__) for r in caplog.records)
