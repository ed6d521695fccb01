"""The emulated REST API (``/api/v10``): the routes a bot framework needs, with Discord's
error shapes, authentication and rate limits, recording every call."""

from __future__ import annotations

import time
import typing

import orjson
from aiohttp import web

from playground.discord import (
    gateway,
    ratelimit,
    records,
    rest_bot,
    rest_commands,
    rest_guilds,
    rest_interactions,
    rest_messages,
    rest_routing,
    rest_state,
    world,
)
from playground.discord.rest_state import INTERACTION_DEADLINE, Interaction

__all__: typing.Sequence[str] = ("INTERACTION_DEADLINE", "Interaction", "RestApi")

Json = dict[str, typing.Any]
#: Every route, in the order they are tried.
_ROUTES: typing.Final[tuple[rest_routing.Route, ...]] = (
    *rest_bot.routes.routes,
    *rest_messages.routes.routes,
    *rest_guilds.routes.routes,
    *rest_commands.routes.routes,
    *rest_interactions.routes.routes,
)


class RestApi(rest_state.RestState):
    """Routes, state for interactions, and the rate limiter."""

    def __init__(
        self,
        world_: world.World,
        records_: records.Records,
        gateway_: gateway.GatewayServer,
        limiter: ratelimit.RestRateLimiter,
        *,
        token: str,
    ) -> None:
        super().__init__(world_, records_, gateway_)
        self.limiter = limiter
        self.token = token

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        matched: tuple[rest_routing.Route, dict[str, str]] | None = None
        for candidate in _ROUTES:
            if candidate.method != method:
                continue
            found = candidate.pattern.match(path)
            if found:
                matched = (candidate, found.groupdict())
                break
        body: typing.Any = None
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return self._finish(
                        method, path, "?", None, 400, {"message": "invalid JSON", "code": 50109}, {}
                    )
        if matched is None:
            return self._finish(
                method, path, "?", body, 404, {"message": "404: Not Found", "code": 0}, {}
            )
        spec, params = matched
        template = f"{method} {spec.template}"
        if spec.auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return self._finish(
                method, path, template, body, 401, {"message": "401: Unauthorized", "code": 0}, {}
            )
        decision = self.limiter.check(
            template,
            params.get(spec.major, ""),
            exempt_global=spec.exempt_global,
            per_route=spec.per_route,
        )
        if decision.banned:
            self.records.rest.append(
                records.RestCallRecord(time.time(), method, path, template, 429, body, None)
            )
            return web.Response(status=429, text="error code: 1015", content_type="text/plain")
        if not decision.allowed:
            payload = {
                "message": "You are being rate limited.",
                "retry_after": round(decision.retry_after, 3),
                "global": decision.is_global,
            }
            return self._finish(
                method, path, template, body, 429, payload, decision.headers, decision.scope
            )
        try:
            result = spec.handler(self, request, params, body)
        except rest_state.DiscordHTTPError as exc:
            return self._finish(
                method, path, template, body, exc.status, exc.body, decision.headers
            )
        status = 204 if result is None else 200
        return self._finish(method, path, template, body, status, result, decision.headers)

    def _finish(
        self,
        method: str,
        path: str,
        template: str,
        body: typing.Any,
        status: int,
        payload: Json | list[Json] | None,
        headers: dict[str, str],
        scope: str = "",
    ) -> web.Response:
        self.limiter.count_response(status, scope)
        self.records.rest.append(
            records.RestCallRecord(
                time.time(),
                method,
                path,
                template,
                status,
                body,
                headers.get("X-RateLimit-Bucket"),
                _remaining(headers),
            )
        )
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status,
            body=orjson.dumps(payload),
            content_type="application/json",
            headers=headers,
        )


def _remaining(headers: dict[str, str]) -> int | None:
    raw = headers.get("X-RateLimit-Remaining")
    return int(raw) if raw is not None else None
