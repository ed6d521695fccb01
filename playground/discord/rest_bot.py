"""REST routes a bot calls about itself: the gateway to connect to, users, its application."""

from __future__ import annotations

import typing

from playground.discord import handshakes, rest_routing, rest_state

if typing.TYPE_CHECKING:
    from aiohttp import web

Json = dict[str, typing.Any]
routes: typing.Final = rest_routing.RouteTable()


@routes.add("GET", "/gateway", auth=False)
def _get_gateway(
    _api: rest_state.RestState, r: web.Request, _p: dict[str, str], _b: typing.Any
) -> Json:
    return {"url": handshakes.gateway_url(r.host)}


@routes.add("GET", "/gateway/bot")
def _get_gateway_bot(
    api: rest_state.RestState, r: web.Request, _p: dict[str, str], _b: typing.Any
) -> Json:
    return {
        "url": handshakes.gateway_url(r.host),
        "shards": api.gateway.options.recommended_shards,
        "session_start_limit": api.gateway.session_start_limit(),
    }


@routes.add("GET", "/users/@me")
def _get_me(api: rest_state.RestState, _r: web.Request, _p: dict[str, str], _b: typing.Any) -> Json:
    return api.world.bot_user


@routes.add("GET", "/users/{user_id}")
def _get_user(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> Json:
    user = api.world.users.get(rest_routing.snowflake(p, "user_id"))
    if user is None:
        raise rest_state.DiscordHTTPError(404, 10013, "Unknown User")
    return user


@routes.add("GET", "/oauth2/applications/@me")
def _get_application(
    api: rest_state.RestState, _r: web.Request, _p: dict[str, str], _b: typing.Any
) -> Json:
    return {
        "id": str(api.world.application_id),
        "name": api.world.bot_user["username"],
        "icon": None,
        "description": "",
        "bot_public": True,
        "bot_require_code_grant": False,
        "bot": api.world.bot_user,
        "owner": api.world.bot_user,
        "verify_key": "0" * 64,
        "team": None,
        "flags": 0,
        "summary": "",
        # Returned by Get Current Application (GET /applications/@me and the OAuth2 form).
        "approximate_guild_count": len(api.world.guilds),
        "approximate_user_install_count": 0,
        "integration_types_config": {"0": {}},
    }
