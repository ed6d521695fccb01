"""A command's arguments from either surface, as the objects its options' types promise.

A slash command's ids come with their objects in the interaction's ``resolved`` data
(Receiving and Responding > Interaction Object > Resolved Data Structure): users, members,
roles, channels (partial, as Discord sends them: ``hikari.InteractionChannel`` whatever class
the annotation names, whose ``channel_types`` Discord's picker already enforced) and
attachments. A prefix command's words name ids (mentions or bare ids) that are looked up in the
cache or over REST, and its attachment options take the message's attachments in order.
"""

from __future__ import annotations

import typing

import hikari

from shared import redis_client
from worker.commands import options as options_module

if typing.TYPE_CHECKING:
    from worker import traits
    from worker.commands import context as context_module
    from worker.commands import model

__all__: typing.Sequence[str] = ("from_slash", "from_words")

Kind = options_module.Kind
_BY_ID: typing.Final = frozenset({Kind.USER, Kind.ROLE, Kind.CHANNEL, Kind.MENTIONABLE})


async def from_words(
    bot: traits.CommandApp, ctx: context_module.Context, command: model.Command, text: str
) -> dict[str, typing.Any]:
    words = options_module.split_words(text)
    files = list(ctx.message.attachments) if ctx.message is not None else []
    typed = [o for o in command.options if o.kind is not Kind.ATTACHMENT]
    kwargs: dict[str, typing.Any] = {}
    for spec in command.options:
        if spec.kind is Kind.ATTACHMENT:
            if files:
                kwargs[spec.name] = files.pop(0)
            elif spec.required:
                raise options_module.ArgumentError(
                    f"`{spec.name}` is missing: attach a file to the message."
                )
            else:
                kwargs[spec.name] = spec.default
            continue
        if not words:
            if spec.required:
                raise options_module.ArgumentError(f"`{spec.name}` is missing.")
            kwargs[spec.name] = spec.default
            continue
        if spec is typed[-1] and spec.kind is Kind.STRING:
            word, words = " ".join(words), []  # the last text option takes the rest
        else:
            word, words = words[0], words[1:]
        value = options_module.convert_word(spec, word)
        kwargs[spec.name] = await _resolve(bot, ctx, spec, value)
    if words:
        raise options_module.ArgumentError(
            f"Too many words: {options_module.shown(' '.join(words))}."
        )
    return kwargs


async def _resolve(
    bot: traits.CommandApp,
    ctx: context_module.Context,
    spec: options_module.OptionSpec,
    value: typing.Any,
) -> typing.Any:
    """Ids from a prefix command as the objects the option's type promises."""
    if spec.kind not in _BY_ID:
        return value
    found: typing.Any = None
    try:
        if isinstance(value, options_module.MentionId):
            if value.kind is not Kind.ROLE:
                found = await _user(bot, ctx, value.id, wants_member=spec.wants_member)
            if found is None and value.kind is not Kind.USER:
                found = await _role(bot, ctx, value.id)
        elif spec.kind is Kind.USER:
            found = await _user(bot, ctx, value, wants_member=spec.wants_member)
        elif spec.kind is Kind.ROLE:
            found = await _role(bot, ctx, value)
        elif spec.kind is Kind.CHANNEL:
            found = spec.check_channel(await bot.rest.fetch_channel(value))
    except (hikari.NotFoundError, hikari.ForbiddenError):
        found = None
    except redis_client.REDIS_ERRORS:
        found = None
    if found is None:
        what = "user or role" if spec.kind is Kind.MENTIONABLE else spec.kind.name.lower()
        raise options_module.ArgumentError(f"`{spec.name}`: no such {what}.")
    return found


async def _user(
    bot: traits.CommandApp,
    ctx: context_module.Context,
    user_id: hikari.Snowflake,
    *,
    wants_member: bool,
) -> typing.Any:
    cache = bot.cache
    found: typing.Any = None
    if ctx.guild_id is not None and cache is not None:
        found = await cache.get_member(ctx.guild_id, user_id)
    if found is None and wants_member and ctx.guild_id is not None:
        found = await bot.rest.fetch_member(ctx.guild_id, user_id)
    if found is None and not wants_member:
        found = (await cache.get_user(user_id) if cache else None) or (
            await bot.rest.fetch_user(user_id)
        )
    return found


async def _role(
    bot: traits.CommandApp, ctx: context_module.Context, role_id: hikari.Snowflake
) -> hikari.Role | None:
    if ctx.guild_id is None:
        return None
    roles = await bot.rest.fetch_roles(ctx.guild_id)
    return next((r for r in roles if r.id == role_id), None)


def from_slash(
    command: model.Command,
    options: typing.Sequence[hikari.CommandInteractionOption],
    resolved: hikari.ResolvedOptionData | None,
) -> dict[str, typing.Any]:
    given = {o.name: o.value for o in options}
    kwargs: dict[str, typing.Any] = {}
    for spec in command.options:
        if spec.name not in given:
            if spec.required:
                raise options_module.ArgumentError(f"`{spec.name}` is missing.")
            kwargs[spec.name] = spec.default
            continue
        value = given[spec.name]
        if spec.kind in _BY_ID or spec.kind is Kind.ATTACHMENT:
            value = _from_resolved(spec, hikari.Snowflake(int(str(value))), resolved)
        else:
            value = spec.check(value)
        kwargs[spec.name] = value
    return kwargs


def _from_resolved(
    spec: options_module.OptionSpec,
    value: hikari.Snowflake,
    resolved: hikari.ResolvedOptionData | None,
) -> typing.Any:
    found: typing.Any = None
    if resolved is not None:
        if spec.kind in (Kind.USER, Kind.MENTIONABLE):
            found = resolved.members.get(value) if spec.wants_member else None
            found = found or resolved.users.get(value)
        if spec.kind in (Kind.ROLE, Kind.MENTIONABLE):
            found = found or resolved.roles.get(value)
        elif spec.kind is Kind.CHANNEL:
            found = resolved.channels.get(value)
        elif spec.kind is Kind.ATTACHMENT:
            found = resolved.attachments.get(value)
    if found is None:
        raise options_module.ArgumentError(f"`{spec.name}`: Discord sent no such object.")
    return found
