"""What every REST answer of the node shares, as Lavalink does it: the password (401 missing,
403 wrong), Spring-style error bodies, ``Lavalink-Api-Version: 4`` on every response; and
reading what a request names (its JSON body, session, guild)."""

from __future__ import annotations

import time
import typing

from aiohttp import web

from playground.lavalink import node as node_module

if typing.TYPE_CHECKING:
    from playground.lavalink import players

Json = dict[str, typing.Any]


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


REASONS: typing.Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
}


@web.middleware
async def middleware(
    request: web.Request,
    handler: typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    if request.path != "/v4/websocket":
        given = request.headers.get("Authorization")
        if given is None:
            return stamp(web.Response(status=401))
        if given != request.app[node_module.NODE].password:
            return stamp(web.Response(status=403))
    try:
        response = await handler(request)
    except HTTPError as exc:
        response = web.json_response(
            {
                "timestamp": int(time.time() * 1000),
                "status": exc.status,
                "error": REASONS.get(exc.status, "Error"),
                "message": exc.message,
                "path": request.path,
            },
            status=exc.status,
        )
    return stamp(response)


def stamp(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Lavalink-Api-Version"] = "4"
    return response


async def json_body(request: web.Request) -> Json:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPError(400, "Malformed JSON request body") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "Expected a JSON object")
    request.app[node_module.NODE].requests.append((request.method, request.path, body))
    return body


def session_of(request: web.Request) -> players.Session:
    session = request.app[node_module.NODE].sessions.get(request.match_info["session"])
    if session is None or session.ws is None:
        raise HTTPError(404, "Session not found")
    return session


def guild_of(request: web.Request) -> int:
    try:
        return int(request.match_info["guild"])
    except ValueError:
        raise HTTPError(400, "guildId must be a number") from None
