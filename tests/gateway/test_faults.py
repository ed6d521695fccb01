"""The gateway when Redis or RabbitMQ go away (private servers, stopped for real)."""

from __future__ import annotations

import asyncio
import logging
import time
import typing

import pytest
import redis.asyncio as aioredis

from tests import netproxy, servers
from tests.gateway.conftest import Stack

if typing.TYPE_CHECKING:
    import pathlib

    from playground.discord import emulator

pytestmark = pytest.mark.fault


def channel_of(discord: emulator.DiscordEmulator) -> int:
    guild = discord.add_guild("g")
    return int(discord.channels_of(int(guild["id"]))[0]["id"])


async def test_redis_down_keeps_publishing_and_says_so(
    stack: Stack, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    private = servers.PrivateRedis(tmp_path)
    private.start()
    client = aioredis.Redis.from_url(private.url)
    faulty = Stack(
        stack.discord, stack.namespace, stack.amqp_url, private.url, client, stack.connection,
        stack.mongo_url,
    )  # fmt: skip
    discord = stack.discord
    channel_id = channel_of(discord)
    user = discord.add_user("u")
    sink = await faulty.listen(["MESSAGE_CREATE"])
    try:
        async with faulty.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            private.stop()
            for index in range(20):
                discord.send_message(channel_id, user, f"m{index}")
            await discord.wait_for(lambda: len(sink.of("MESSAGE_CREATE")) == 20, what="20 events")
            await discord.wait_for(lambda: not gateway.redis_up, what="redis_up to drop")
            assert 'shardline_gateway_redis_up{pool="main"} 0.0' in gateway.render_metrics()
            assert any(
                "Redis unavailable" in r.getMessage()
                for r in caplog.records
                if r.name.startswith("shardline")
            )
            private.start()
            discord.send_message(channel_id, user, "after")
            await discord.wait_for(lambda: gateway.redis_up, timeout=15, what="redis back")
            # Redis came back empty; the next checkpoint wrote the whole session again.
            await client.aclose()
            client = aioredis.Redis.from_url(private.url)
            # The checkpoint that catches up with the last event comes within a few ticks.
            deadline = time.monotonic() + 10
            while (stored := await client.hget(faulty.keys.session(0, 1), "seq")) is None or (
                int(stored) != discord.gateway.shards[0].seq
            ):
                assert time.monotonic() < deadline, (stored, discord.gateway.shards[0].seq)
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()
        private.stop()


async def test_broker_down_buffers_pauses_and_loses_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """RabbitMQ unreachable (the network to it cut), then back."""
    caplog.set_level(logging.WARNING)
    proxy = netproxy.TcpProxy(servers.AMQP_PORT)
    await proxy.start()
    broker_url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.5"
    faulty = Stack(
        stack.discord, stack.namespace, broker_url, stack.redis_url, stack.redis, stack.connection,
        stack.mongo_url,
    )  # fmt: skip
    discord = stack.discord
    channel_id = channel_of(discord)
    user = discord.add_user("u")
    sink = await faulty.listen(["MESSAGE_CREATE"])  # on the direct connection: stays up
    sent: list[str] = []

    async def say(count: int) -> None:
        for _ in range(count):
            text = f"m{len(sent)}"
            discord.send_message(channel_id, user, text)
            sent.append(text)
            await asyncio.sleep(0.02)

    try:
        async with faulty.gateway(SHARD_COUNT="1", SHARD_IDS="0", PUBLISH_BUFFER="30") as gateway:
            assert gateway.publisher is not None
            assert gateway.group is not None
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            await say(10)
            await discord.wait_for(lambda: len(sink.of("MESSAGE_CREATE")) == 10)
            await proxy.cut()
            await say(80)
            assert gateway.group.paused, "shard reads paused"
            # Bounded: the publisher holds its buffer plus what had already been read off the
            # socket when it paused; the rest waits in the socket (and at Discord).
            assert gateway.publisher.buffered <= 40
            assert discord.gateway.shards[0].connection is not None
            assert discord.gateway.shards[0].seq > gateway.publisher.streams[0].seen_seq
            await proxy.restore()
            await discord.wait_for(
                lambda: {e["d"]["content"] for e in sink.of("MESSAGE_CREATE")} >= set(sent),
                timeout=30,
                what="every event after the broker came back",
            )
            await discord.wait_for(lambda: not gateway.group.paused, what="reads resumed")
            assert gateway.publisher.stats.publish_failures > 0
            assert any(
                "publish buffer full" in r.getMessage()
                for r in caplog.records
                if r.name.startswith("shardline")
            )
    finally:
        await proxy.close()
