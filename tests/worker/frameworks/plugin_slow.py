"""Framework commands that answer late, and one with a Redis cooldown: the worker's 3 s guard
and limits under arc and tanjun."""

from __future__ import annotations

import asyncio
import typing

import arc
import tanjun

from worker.frameworks import tanjun as tanjun_glue

if typing.TYPE_CHECKING:
    from worker import bot as bot_module

component = tanjun.Component()


@component.with_command
@tanjun.as_slash_command("tanjun-slow", "Answers after 2.5 s")
async def tanjun_slow(ctx: tanjun.abc.SlashContext) -> None:
    await asyncio.sleep(2.5)
    await ctx.respond("tanjun, slowly")


@component.with_command
@tanjun.with_cooldown("limited")
@tanjun.as_slash_command("limited", "Once a minute per user, on every replica")
async def limited(ctx: tanjun.abc.SlashContext) -> None:
    await ctx.respond("ran")


def setup(bot: bot_module.Bot) -> None:
    client = arc.GatewayClient(typing.cast("typing.Any", bot))

    @client.include
    @arc.slash_command("arc-slow", "Answers after 2.5 s")
    async def arc_slow(ctx: arc.GatewayContext) -> None:
        await asyncio.sleep(2.5)
        await ctx.respond("arc, slowly")

    @client.include
    @arc.slash_command("arc-slower", "Answers after 3.5 s, arc's autodefer off", autodefer=False)
    async def arc_slower(ctx: arc.GatewayContext) -> None:
        await asyncio.sleep(3.5)
        await ctx.respond("arc, without its autodefer")

    tanjun_client = tanjun.Client.from_gateway_bot(typing.cast("typing.Any", bot))
    tanjun_client.add_component(component.copy())
    tanjun_glue.RedisCooldownManager(bot.redis, bot.keys).set_bucket(
        "limited", tanjun.BucketResource.USER, 1, 60
    ).add_to_client(tanjun_client)
