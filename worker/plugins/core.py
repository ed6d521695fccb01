"""The built-in ``core`` plugin: ping, help, prefix, stats."""

from __future__ import annotations

import time
import typing

import hikari

from shared import fleet, keys, redis_client, settings, sharding, status
from worker.commands import option

if typing.TYPE_CHECKING:
    from worker import bot as bot_module
    from worker.commands import Context


async def _gateway_statuses(bot: bot_module.Bot) -> list[status.GatewayStatus]:
    try:
        return await fleet.gateway_statuses(bot.redis, bot.keys)
    except redis_client.REDIS_ERRORS:
        return []  # Redis away: the latency is "unknown", the answer still goes out


def setup(bot: bot_module.Bot) -> None:
    for register in (_ping, _help, _prefix, _stats):
        register(bot)


def _ping(bot: bot_module.Bot) -> None:
    @bot.command(description="Replies Pong, with gateway and REST latency")
    async def ping(ctx: Context) -> None:
        shard_id = 0
        if ctx.guild_id is not None:
            shard_id = sharding.shard_for_guild(int(ctx.guild_id), max(bot.shard_count, 1))
        gateway_ms = None
        for status_of in await _gateway_statuses(bot):
            shard = status_of.shards.get(shard_id)
            if shard is not None and shard.latency is not None:
                gateway_ms = shard.latency * 1000
        started = time.perf_counter()
        await bot.rest.fetch_my_user()
        rest_ms = (time.perf_counter() - started) * 1000
        gateway = f"{gateway_ms:.0f} ms" if gateway_ms is not None else "unknown"
        await ctx.respond(f"Pong! Gateway {gateway}, REST {rest_ms:.0f} ms")


def _help(bot: bot_module.Bot) -> None:
    @bot.command("help", description="Lists the commands, or explains one")
    async def help_(ctx: Context, command: str = option("a command to explain", "")) -> None:
        prefix = ctx.prefix.strip() if not ctx.is_slash else "/"
        if command:
            group_name, _, sub_name = command.lower().lstrip("/!").partition(" ")
            found = bot.commands.find(group_name)
            if found is not None and found.subcommands and sub_name:
                found = found.subcommands.get(sub_name)
            if found is None:
                await ctx.respond(f"There is no `{command}` command.")
                return
            await ctx.respond(f"`{found.usage(prefix)}`: {found.description}")
            return
        listed = []
        for c in sorted(bot.commands.commands.values(), key=lambda c: c.name):
            listed += sorted(c.subcommands.values(), key=lambda s: s.name) or [c]
        lines = [
            f"`{prefix}{c.qualified_name}`: {c.description}" for c in listed if not c.owner_only
        ]
        await ctx.respond("\n".join(lines))


def _prefix(bot: bot_module.Bot) -> None:
    @bot.command(description="Shows this server's prefix, or sets it", guild_only=True)
    async def prefix(
        ctx: Context, new: str = option("the new prefix (needs Manage Server)", "", max=32)
    ) -> None:
        assert ctx.guild_id is not None
        store = bot.settings
        if not new:
            current = (await store.guild(int(ctx.guild_id))).prefix
            await ctx.respond(f"My prefix here is `{current or bot.commands.default_prefix}`.")
            return
        missing = await bot.commands.missing_permissions(ctx, hikari.Permissions.MANAGE_GUILD)
        if missing:
            await ctx.respond(f"You need the {missing} permission to change the prefix.")
            return
        try:
            saved = await store.set_prefix(int(ctx.guild_id), new)
        except settings.SettingsValidationError as exc:
            await ctx.respond(f"That prefix won't do: {exc.problem}.")
            return
        except settings.SettingsUnavailableError as exc:
            await ctx.respond(str(exc))
            return
        await ctx.respond(f"Prefix set to `{saved.prefix}`.")


def _stats(bot: bot_module.Bot) -> None:
    @bot.command(description="Guilds, shards, gateways and workers online")
    async def stats(ctx: Context) -> None:
        statuses = await _gateway_statuses(bot)
        shards = sum(len(s.shards) for s in statuses)
        connected = sum(s.connected for s in statuses)
        guilds = await bot.redis.scard(bot.keys.guilds())
        workers = await bot.redis.zcount(bot.keys.workers(), time.time() - keys.HEALTH_TTL, "+inf")
        await ctx.respond(
            f"{guilds} guilds · {connected}/{shards} shards connected · "
            f"{len(statuses)} gateways · {workers} workers"
        )
