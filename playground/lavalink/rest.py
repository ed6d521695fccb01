"""What every REST answer of the node shares, as Lavalink does it: the password (401 missing,
403 wrong), Spring-style error bodies, ``Lavalink-Api-Version: 4`` on every response; and
reading what a request names (its JSON body, session, guild)."""

from __future__ import annotations

import time
import traceback
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
    405: "Method Not Allowed",
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
        response = error_response(request, exc.status, exc.message)
    except web.HTTPException as exc:
        # An unknown route or method: Lavalink (Spring) answers these with the same JSON
        # error body as its own errors (docs/api/rest.md "Error Responses"), not plain text.
        if exc.status < 400:
            raise
        message = (
            f"Request method '{request.method}' is not supported"
            if exc.status == 405
            else f"No static resource {request.path.lstrip('/')}."
        )
        response = error_response(request, exc.status, message)
    return stamp(response)


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    """docs/api/rest.md "Error Responses": timestamp, status, error, message, path; ``trace``
    only when the request has ``?trace=true``."""
    body: Json = {
        "timestamp": int(time.time() * 1000),
        "status": status,
        "error": REASONS.get(status, "Error"),
        "message": message,
        "path": request.path,
    }
    if request.query.get("trace", "").lower() == "true":
        body["trace"] = "".join(traceback.format_stack(limit=8))
    return web.json_response(body, status=status)


def stamp(response: web.StreamResponse) -> web.StreamResponse:
    # Every response, errors included (Lavalink's ResponseHeaderFilter; CHANGELOG "Add API
    # version header to all responses").
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
