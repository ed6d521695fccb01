"""A Redis that accepts connections and never answers (tests/netproxy.py's hang), for 12 s,
under a real gateway and worker: interactions are called back within Discord's 3 s, prefix
commands are answered, and once Redis answers again the cache writes it missed are repaired
(a role revoked during the hang is not honoured by the permission check afterwards)."""

from __future__ import annotations

import asyncio
import time
import typing

import hikari
import pytest
import redis.asyncio as aioredis

from shared import breaker, config
from shared.cache import reader
from tests import netproxy, servers
from tests.gateway.conftest import Stack
from tests.worker.test_runtime import worker
from worker import bot as bot_module
from worker.plugins import core

if typing.TYPE_CHECKING:
    import pathlib

    from gateway import app

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]
HANG: typing.Final = 12.0


def moderated_guild(stack: Stack) -> tuple[int, int, dict[str, typing.Any], int]:
    """A guild with a role that may ban, and a member holding it."""
    world = stack.discord.world
    guild = stack.discord.add_guild("g")
    guild_id = int(guild["id"])
    role_id = world.snowflakes.next()
    guild["roles"].append(
        {**guild["roles"][0], "id": str(role_id), "name": "mod", "position": 1,
         "permissions": str(int(hikari.Permissions.BAN_MEMBERS))}
    )  # fmt: skip
    user = stack.discord.add_user("alice")
    world.add_member(guild_id, user, roles=[role_id])
    channel_id = int(stack.discord.channels_of(guild_id)[0]["id"])
    return guild_id, channel_id, user, role_id


async def wait_closed(gateway: app.GatewayApp) -> None:
    """Until the gateway's Redis breaker lets calls through again (its close writes to Redis)."""
    for _ in range(100):
        if gateway.breakers["redis"].state is not breaker.State.OPEN:
            return
        await asyncio.sleep(0.05)


async def test_a_hung_redis_holds_no_interaction_and_the_cache_repairs_itself(
    stack: Stack, tmp_path: pathlib.Path
) -> None:
    private = servers.PrivateRedis(tmp_path)
    private.start()
    proxy = netproxy.TcpProxy(private.port)
    await proxy.start()
    direct = aioredis.Redis.from_url(private.url)  # the test's own view, past the proxy
    hung = Stack(
        stack.discord, stack.namespace, stack.amqp_url, f"redis://127.0.0.1:{proxy.port}/0",
        direct, stack.connection, stack.mongo_url,
    )  # fmt: skip
    discord = stack.discord
    guild_id, channel_id, alice, _ = moderated_guild(stack)
    bot = bot_module.Bot()
    core.setup(bot)
    cache = reader.CacheReader(direct, hung.keys, bot.entity_factory)

    async def can_ban() -> bool | None:
        perms = await cache.member_permissions(guild_id, int(alice["id"]))
        return None if perms is None else bool(perms & hikari.Permissions.BAN_MEMBERS)

    try:
        async with (
            worker(hung, bot) as replica,
            # GUILD_CREATE carries the guild's members only with GUILD_PRESENCES (Gateway
            # Events "Guild Create"): the cached member is what the repair must correct.
            hung.gateway(
                SHARD_COUNT="1",
                SHARD_IDS="0",
                INTENTS=str(config.DEFAULT_INTENTS | int(hikari.Intents.GUILD_PRESENCES)),
            ) as gateway,
        ):
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            deadline = time.monotonic() + 15
            while await can_ban() is not True:
                assert time.monotonic() < deadline, "the guild was never cached"
                await asyncio.sleep(0.1)

            try:
                proxy.hang()
                hang_started = time.monotonic()
                # The role is revoked while Redis hangs: its cache write is lost.
                member = discord.world.members[guild_id][int(alice["id"])]
                member["roles"] = []
                discord.dispatch("GUILD_MEMBER_UPDATE", {**member, "guild_id": str(guild_id)},
                                 guild_id=guild_id)  # fmt: skip
                await asyncio.sleep(0.2)
                interaction = discord.send_interaction(channel_id, alice, "ping")
                discord.send_message(channel_id, alice, "!ping")
                await discord.wait_for(
                    lambda: interaction.response is not None, timeout=10, what="the callback"
                )
                callback = next(c for c in discord.records.rest if c.path.endswith("/callback"))
                latency = callback.at - interaction.created_at_wall

                def pongs() -> list[str]:
                    return [
                        m["content"] for m in discord.world.messages[channel_id].values()
                        if m["content"].startswith("Pong!")
                    ]  # fmt: skip

                await discord.wait_for(lambda: len(pongs()) >= 1, timeout=10, what="!ping answered")
                assert gateway.publisher is not None
                assert gateway.publisher.stats.cache_failures >= 1
                assert gateway.repair is not None
                repair = gateway.repair
                # Operators see it: metrics and `shardline status` name the open breaker.
                assert gateway.status().breakers == {"redis": "open"}
                assert replica.status()["breakers"]["redis"] == "open"
                assert (
                    'shardline_gateway_breaker_state{breaker="redis",pool="main"} 2.0'
                    in gateway.render_metrics()
                )
                assert (
                    'shardline_worker_breaker_state{breaker="redis",group="default",pool="main"} '
                    "2.0" in replica.render_metrics()
                )
                assert guild_id in repair.pending
                await asyncio.sleep(max(0.0, HANG - (time.monotonic() - hang_started)))
                assert await can_ban() is True, (
                    "stale while Redis hung: the revoked role still counts"
                )
                proxy.resume()
                resumed = time.monotonic()
                while await can_ban() is not False:
                    assert time.monotonic() - resumed < 15, "the cache was never repaired"
                    await asyncio.sleep(0.05)
                repair_time = time.monotonic() - resumed
                await discord.wait_for(lambda: not repair.pending, what="the repair to end")
                assert latency < 3.0, latency
                assert repair_time < 5.0, repair_time  # a probe (2 s) and a round (1 s)
                assert gateway.breakers["redis"].state is breaker.State.CLOSED
            finally:
                proxy.resume()  # a failure above must not leave Redis hung for the close
                await wait_closed(gateway)
    finally:
        await direct.aclose()
        await proxy.close()
        private.stop()
