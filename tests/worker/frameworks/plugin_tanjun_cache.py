"""A tanjun prefix command whose argument tanjun's own converter turns into a guild member:
through the worker's Redis cache, not a REST call."""

from __future__ import annotations

import typing

import hikari  # noqa: TC002 - tanjun's injection reads the callback's annotations at run time
import tanjun

if typing.TYPE_CHECKING:
    from worker import bot as bot_module

component = tanjun.Component()


@component.with_command
@tanjun.with_argument("member", converters=tanjun.to_member)
@tanjun.as_message_command("whois")
async def whois(ctx: tanjun.abc.MessageContext, member: hikari.Member) -> None:
    await ctx.respond(f"that is {member.username}")


def setup(bot: bot_module.Bot) -> None:
    client = tanjun.Client.from_gateway_bot(typing.cast("typing.Any", bot), mention_prefix=True)
    client.add_prefix("!").add_component(component.copy())
