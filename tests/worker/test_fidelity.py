"""Commands where the faithful emulator differs from a naive one: DMs (shard 0 only)."""

from __future__ import annotations

import asyncio
import typing

from tests.worker.test_commands import replicas, replies
from worker import bot as bot_module
from worker.commands import Context  # noqa: TC001 - the command signature is read at runtime
from worker.plugins import core

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack


async def test_a_dm_command_reaches_one_worker_through_shard_0_and_is_answered_in_the_dm(
    stack: Stack,
) -> None:
    discord = stack.discord
    discord.add_guild("g")
    user = discord.add_user("dm-user")
    dm = discord.open_dm(user)
    channel_id = int(dm["id"])
    ran: list[int] = []

    def make_bot() -> bot_module.Bot:
        bot = bot_module.Bot()
        core.setup(bot)

        @bot.command(description="Answers in DMs")
        async def hello(ctx: Context) -> None:
            ran.append(id(bot))
            await ctx.respond("hello in private")

        return bot

    async with replicas(stack, 2, make_bot), stack.gateway(SHARD_COUNT="2", SHARD_IDS="0,1"):
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1])
        message = discord.send_message(channel_id, user, "!hello")
        await discord.wait_for(lambda: replies(discord, channel_id) == ["hello in private"])
        await asyncio.sleep(1.0)  # room for a second delivery to show up, if there were one
    assert len(ran) == 1
    assert replies(discord, channel_id) == ["hello in private"]

    def took(shard_id: int) -> bool:
        session = discord.gateway.sessions.layouts[(shard_id, 2)]
        return any(
            p["t"] == "MESSAGE_CREATE" and p["d"]["id"] == message["id"] for p in session.buffer
        )

    assert took(0)
    assert not took(1)  # Gateway > Sharding: DMs go to shard 0 only
