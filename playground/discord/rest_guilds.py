"""REST routes of guilds: the guild, its channels, roles and members."""

from __future__ import annotations

import typing

from playground.discord import rest_routing, rest_state

if typing.TYPE_CHECKING:
    from aiohttp import web

Json = dict[str, typing.Any]
routes: typing.Final = rest_routing.RouteTable()


@routes.add("GET", "/guilds/{guild_id}")
def _get_guild(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> Json:
    return api.guild(rest_routing.snowflake(p, "guild_id"))


@routes.add("GET", "/guilds/{guild_id}/channels")
def _get_guild_channels(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> list[Json]:
    guild_id = rest_routing.snowflake(p, "guild_id")
    api.guild(guild_id)
    return api.world.guild_channels(guild_id)


@routes.add("GET", "/guilds/{guild_id}/roles")
def _get_roles(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> list[Json]:
    return list(api.guild(rest_routing.snowflake(p, "guild_id"))["roles"])


@routes.add("GET", "/guilds/{guild_id}/members/{user_id}")
def _get_member(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> Json:
    guild_id = rest_routing.snowflake(p, "guild_id")
    api.guild(guild_id)
    member = api.world.members[guild_id].get(rest_routing.snowflake(p, "user_id"))
    if member is None:
        raise rest_state.DiscordHTTPError(404, 10007, "Unknown Member")
    return member
