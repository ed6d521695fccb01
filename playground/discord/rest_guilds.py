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


@routes.add("GET", "/guilds/{guild_id}/members")
def _list_members(
    api: rest_state.RestState, r: web.Request, p: dict[str, str], _b: typing.Any
) -> list[Json]:
    # List Guild Members (resources/guild#list-guild-members): ``limit`` 1-1000 (default 1),
    # ``after`` the highest user id of the previous page; sorted by user id.
    guild_id = rest_routing.snowflake(p, "guild_id")
    api.guild(guild_id)
    try:
        limit = int(r.query.get("limit", "1"))
        after = int(r.query.get("after", "0"))
    except ValueError:
        raise rest_state.DiscordHTTPError(400, 50035, "Invalid Form Body") from None
    if not 1 <= limit <= 1000:
        raise rest_state.DiscordHTTPError(400, 50035, "Invalid Form Body")
    members = api.world.members[guild_id]
    return [members[uid] for uid in sorted(members) if uid > after][:limit]


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
