"""A plugin for the fault suite (WORKER_PLUGINS=tests.faults.plugin_record): every handled
message is counted in Redis, so a test sees what was lost and what was handled twice.

``RECORD_DELAY`` (seconds) makes each handler take that long, so work is in flight when a
process is killed. ``RECORD_REDIS_URL`` keeps the counts apart from the platform's own Redis
(which a test may stop).
"""

from __future__ import annotations

import asyncio
import os
import typing

import hikari
import redis.asyncio as aioredis

from worker.commands import Cooldown

if typing.TYPE_CHECKING:
    from worker import bot as bot_module
    from worker.commands import Context


def counts_key(bot: bot_module.Bot) -> str:
    assert bot.keys is not None
    return f"{bot.keys.prefix}:fault-handled"


def setup(bot: bot_module.Bot) -> None:
    delay = float(os.environ.get("RECORD_DELAY", "0"))
    counts: list[aioredis.Redis] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def record(event: hikari.GuildMessageCreateEvent) -> None:
        content = event.content or ""
        if not content.startswith("load-"):
            return
        if delay:
            await asyncio.sleep(delay)
        if not counts:
            url = os.environ.get("RECORD_REDIS_URL")
            assert bot.redis is not None
            counts.append(aioredis.Redis.from_url(url) if url else bot.redis)
        await counts[0].hincrby(counts_key(bot), content, 1)

    @bot.command(
        description="Says hi, five times a minute per user", cooldown=Cooldown(5, 60, "user")
    )
    async def hi(ctx: Context) -> None:
        await ctx.respond(f"hi {ctx.author.id}")
