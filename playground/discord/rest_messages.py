"""REST routes of channels and their messages."""

from __future__ import annotations

import typing

from playground.discord import rest_routing, rest_state

if typing.TYPE_CHECKING:
    from aiohttp import web

Json = dict[str, typing.Any]
routes: typing.Final = rest_routing.RouteTable()


@routes.add("GET", "/channels/{channel_id}")
def _get_channel(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> Json:
    return api.channel(rest_routing.snowflake(p, "channel_id"))


@routes.add("POST", "/channels/{channel_id}/messages")
def _create_message(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], b: typing.Any
) -> Json:
    return api.post_message(
        rest_routing.snowflake(p, "channel_id"), api.world.bot_user, rest_state.message_body(b)
    )


def _stored_message(api: rest_state.RestState, p: dict[str, str]) -> Json:
    channel_id = rest_routing.snowflake(p, "channel_id")
    api.channel(channel_id)
    message = api.world.messages[channel_id].get(rest_routing.snowflake(p, "message_id"))
    if message is None:
        raise rest_state.DiscordHTTPError(404, 10008, "Unknown Message")
    return message


@routes.add("GET", "/channels/{channel_id}/messages/{message_id}")
def _get_message(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> Json:
    return _stored_message(api, p)


@routes.add("PATCH", "/channels/{channel_id}/messages/{message_id}")
def _edit_message(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], b: typing.Any
) -> Json:
    message = _stored_message(api, p)
    if message["author"]["id"] != str(api.world.bot_id):
        raise rest_state.DiscordHTTPError(
            403, 50005, "Cannot edit a message authored by another user"
        )
    return api.update_message(message, b)


@routes.add("DELETE", "/channels/{channel_id}/messages/{message_id}")
def _delete_message(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> None:
    message = _stored_message(api, p)
    del api.world.messages[int(message["channel_id"])][int(message["id"])]
    api.world.message_changed("delete", message)
