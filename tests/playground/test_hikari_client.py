"""hikari's own GatewayBot against the emulator: an independent client proves it faithful."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import hikari

if TYPE_CHECKING:
    from tests.conftest import EmulatorFactory as Factory


async def test_hikari_gateway_bot_two_shards_message_reply_and_resume(
    make_emulator: Factory,
) -> None:
    discord = await make_emulator(max_concurrency=2, recommended_shards=2, heartbeat_interval=5)
    guilds = [discord.add_guild(f"g{shard}", shard=(shard, 2)) for shard in range(2)]
    bot = hikari.GatewayBot(
        discord.token,
        rest_url=discord.api_url,
        intents=hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT,
        banner=None,
        suppress_optimization_warning=True,
    )
    received: list[tuple[int, str]] = []
    guilds_seen: list[hikari.Snowflake] = []

    @bot.listen(hikari.GuildAvailableEvent)
    async def on_guild(event: hikari.GuildAvailableEvent) -> None:
        guilds_seen.append(event.guild_id)

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        received.append((event.shard.id, event.content or ""))
        if event.content == "!ping":
            await event.message.respond("pong")

    await bot.start()  # shard count from /gateway/bot
    try:
        assert sorted(bot.shards) == [0, 1]
        assert discord.connected_shards() == [0, 1]
        await discord.wait_for(lambda: len(guilds_seen) == 2, what="GUILD_CREATE for both shards")
        assert sorted(guilds_seen) == sorted(hikari.Snowflake(g["id"]) for g in guilds)
        assert not discord.records.identify_violations

        user = discord.add_user("alice")
        channel_id = int(discord.channels_of(int(guilds[1]["id"]))[0]["id"])
        discord.send_message(channel_id, user, "!ping")
        await discord.wait_for(lambda: len(received) == 2, what="the message and the bot's reply")
        assert received == [(1, "!ping"), (1, "pong")]
        [post] = [call for call in discord.records.rest if call.method == "POST"]
        assert post.path == f"/channels/{channel_id}/messages"
        assert post.body["content"] == "pong"

        discord.force_reconnect(1)
        await discord.wait_for(lambda: discord.records.resumes, what="RESUME after RECONNECT")
        [resume] = discord.records.resumes
        assert (resume.accepted, resume.shard_id, resume.path) == (True, 1, "/resume")
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1], what="reconnected")
        discord.send_message(channel_id, user, "after resume")
        await discord.wait_for(lambda: len(received) == 3, what="an event after the resume")
        assert received[-1] == (1, "after resume")
        assert len(discord.records.identifies) == 2, "a RESUME is not an IDENTIFY"
    finally:
        await bot.close()
    await asyncio.sleep(0)
