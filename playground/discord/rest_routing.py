"""How the REST API finds a route: method, path template, authentication, and the rate
limit's major parameter (``channel_id``, ``guild_id`` or ``webhook_token``)."""

from __future__ import annotations

import dataclasses
import re
import typing

from playground.discord import rest_state

if typing.TYPE_CHECKING:
    from aiohttp import web

Json = dict[str, typing.Any]
Handler = typing.Callable[
    [rest_state.RestState, "web.Request", dict[str, str], typing.Any], Json | list[Json] | None
]


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    exempt_global: bool
    major: str
    per_route: bool = True


class RouteTable:
    """Routes in the order they were added: the first that matches a request answers it."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        template: str,
        *,
        auth: bool = True,
        exempt_global: bool = False,
        per_route: bool = True,
    ) -> typing.Callable[[Handler], Handler]:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        # Rate Limits: the major parameters ("top-level resources") are channel_id, guild_id and
        # webhook_id (+ webhook_token). The interaction callback has no per-route limit at all
        # (``per_route=False``, rest_interactions.py).
        majors = [
            m for m in ("channel_id", "guild_id", "webhook_token") if "{" + m + "}" in template
        ]

        def register(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method,
                    template,
                    re.compile(regex),
                    handler,
                    auth,
                    exempt_global,
                    majors[0] if majors else "",
                    per_route,
                )
            )
            return handler

        return register


def snowflake(params: dict[str, str], name: str) -> int:
    try:
        return int(params[name])
    except ValueError:
        raise rest_state.DiscordHTTPError(
            400, 50035, "Invalid Form Body", {name: {"_errors": [{"code": "NUMBER_TYPE_COERCE"}]}}
        ) from None
