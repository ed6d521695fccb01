"""A Redis Cluster master killed while a gateway and a worker run events through the cluster:
every event is still handled (its replica promoted meanwhile), none twice."""

from __future__ import annotations

import asyncio
import time
import typing

import hikari

from tests.cluster import redis_client, redis_url
from tests.worker.test_runtime import text_channel, worker
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from tests import servers
    from tests.gateway.conftest import Stack

__all__ = ["redis_client", "redis_url"]

#: Messages sent in all; the master is killed after a third of them.
MESSAGES: typing.Final = 300


async def test_cluster_a_master_killed_under_load_loses_no_event(
    stack: Stack, redis_cluster: servers.PrivateRedisCluster
) -> None:
    discord = stack.discord
    guild_id, channel_id = text_channel(stack)
    author = discord.add_user("alice")
    bot = bot_module.Bot()
    handled: list[str] = []
    all_in = asyncio.Event()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        handled.append(event.content or "")
        if len(set(handled)) == MESSAGES:
            all_in.set()

    # The master holding this guild's cache keys: the gateway's cache writes and the
    # worker's reads of every one of these events meet it.
    cluster = typing.cast("typing.Any", stack.redis)
    await cluster.ping()
    port = cluster.get_node_from_key(stack.keys.guild(guild_id)).port
    killed_at = 0.0
    try:
        async with worker(stack, bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            for number in range(MESSAGES):
                if number == MESSAGES // 3:
                    killed_at = time.monotonic()
                    redis_cluster.kill(port)
                discord.send_message(channel_id, author, f"m{number}")
                await asyncio.sleep(0.02)
            await asyncio.wait_for(all_in.wait(), 60)
            took = time.monotonic() - killed_at
    finally:
        redis_cluster.start_node(port)  # it rejoins as a replica of its successor
    duplicates = len(handled) - len(set(handled))
    print(  # noqa: T201 - what the test measured
        f"\nmaster killed under load: {MESSAGES} events sent, {len(set(handled))} handled,"
        f" {duplicates} twice; the last handled {took:.1f}s after the kill"
    )
    assert set(handled) == {f"m{n}" for n in range(MESSAGES)}
    assert duplicates == 0
