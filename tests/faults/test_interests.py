"""Selective forwarding never drops an event a worker group wants: a group that starts is
forwarded from the moment it reports ready, and a Redis that loses its data (FLUSHALL) while
events flow loses none of them (``gateway.interests``, ``worker.interests``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import typing

import hikari
import pytest
import redis.asyncio as aioredis

from shared import config
from shared import interests as shared_interests
from tests import servers
from tests.faults.test_faults import Load
from worker import app
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    import pathlib

    from tests.faults.conftest import Row
    from tests.gateway.conftest import Stack

pytestmark = pytest.mark.fault


@contextlib.asynccontextmanager
async def replica(
    stack: Stack, bot: bot_module.Bot | None = None, **extra: str
) -> typing.AsyncIterator[app.WorkerApp]:
    worker = app.WorkerApp(config.WorkerSettings.from_env(stack.env(**extra)), bot)
    try:
        await worker.start()
        yield worker
    finally:
        await worker.close()


async def ready(worker: app.WorkerApp) -> float:
    """Wait until the replica's ``/readyz`` would say ready; returns when."""
    deadline = time.monotonic() + 30
    while worker.readiness() is not None:
        assert time.monotonic() < deadline, worker.readiness()
        await asyncio.sleep(0.005)
    return time.monotonic()


@pytest.mark.parametrize("other_group", [False, True], ids=["fresh-platform", "another-group"])
async def test_ping_sent_the_moment_the_worker_is_ready_is_answered(
    stack: Stack, other_group: bool
) -> None:
    discord = stack.discord
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    if other_group:  # the gateway knows a group that does not want MESSAGE_CREATE
        await stack.listen(["GUILD_CREATE"], group="a")
    bot = bot_module.Bot()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if event.content == "!ping" and event.author_id != discord.world.bot_id:
            await event.message.respond("pong")

    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        async with replica(stack, bot) as worker:
            await ready(worker)
            discord.send_message(channel_id, discord.add_user("alice"), "!ping")
            await discord.wait_for(
                lambda: any(
                    m["content"] == "pong" for m in discord.world.messages[channel_id].values()
                ),
                timeout=15,
                what="pong",
            )


async def test_a_worker_group_starts_while_traffic_flows(
    stack: Stack, tmp_path: pathlib.Path, fault_report: typing.Callable[[Row], None]
) -> None:
    load = Load(stack, tmp_path)
    await stack.listen(["GUILD_CREATE"], group="a")  # a known view without MESSAGE_CREATE
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await load.discord.wait_for(lambda: load.discord.connected_shards() == [0])
        sending = asyncio.get_running_loop().create_task(load.send(300, rate=100))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        async with replica(stack, WORKER_PLUGINS="tests.faults.plugin_record") as worker:
            ready_at = await ready(worker)
            first = load.sent  # sent from the moment it reports ready
            await sending
            await load.all_handled(timeout=30)
            counts = await load.counts()
    missed = [n for n in range(first, load.sent) if f"load-{n}" not in counts]
    fault_report(await _row(load, "worker group starts while traffic flows", first,
                            ready_at - started, missed))  # fmt: skip
    assert missed == []


async def _row(load: Load, scenario: str, first: int, recovery: float, missed: list[int]) -> Row:
    counts = await load.counts()
    from tests.faults.conftest import Row  # noqa: PLC0415 - a runtime name here

    return Row(
        scenario=scenario,
        sent=load.sent - first,
        handled=load.sent - first - len(missed),
        lost=len(missed),
        duplicates=sum(n - 1 for n in counts.values()),
        recovery=recovery,
        bound=15,
        promise="none lost",
    )


@pytest.mark.parametrize("fault", ["flushall", "notifications-cut"])
async def test_redis_loses_its_data_or_the_notifications_while_serving(
    stack: Stack, tmp_path: pathlib.Path, fault: str, fault_report: typing.Callable[[Row], None]
) -> None:
    private = servers.PrivateRedis(tmp_path)
    private.start()
    platform_redis = aioredis.Redis.from_url(private.url)
    faulty = dataclasses.replace(stack, redis_url=private.url, redis=platform_redis)
    load = Load(faulty, tmp_path)
    load.stack = stack  # counts live in the suite's own Redis, which keeps its data
    try:
        load.spawn_worker(REDIS_URL=private.url)
        deadline = time.monotonic() + 30
        while await platform_redis.zcard(faulty.keys.workers()) < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        async with faulty.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            view = gateway.interests
            assert view is not None
            await load.discord.wait_for(lambda: load.discord.connected_shards() == [0])
            await load.discord.wait_for(lambda: view.acknowledged is not None, what="known")
            sending = asyncio.get_running_loop().create_task(load.send(400, rate=100))
            await asyncio.sleep(1.0)
            if fault == "flushall":
                await platform_redis.flushall()
            else:
                await platform_redis.client_kill_filter(_type="pubsub")
            hit = time.monotonic()
            if fault != "flushall":
                await load.discord.wait_for(lambda: not view.subscribed, what="the cut seen")
            # Recovered: the interests are back in Redis and the gateway follows them again
            # (until then it kept the last view or published every event).
            deadline = hit + 30
            while not (
                await shared_interests.read(platform_redis, faulty.keys) is not None
                and view.subscribed
                and (view.acknowledged or {}).get("default") is not None
            ):
                assert time.monotonic() < deadline, "interests never known again"
                await asyncio.sleep(0.02)
            recovered = time.monotonic() - hit
            await sending
            await load.all_handled(timeout=60)
        row = await load.row(
            "Redis FLUSHALL while serving" if fault == "flushall" else
            "interest notifications cut (pub/sub clients killed)",
            recovered, 15, "none lost; publishes everything until known",
        )  # fmt: skip
        fault_report(row)
        assert row.lost == 0
        assert row.recovery < row.bound
    finally:
        await load.stop_all()
        await platform_redis.aclose()
        private.stop()
