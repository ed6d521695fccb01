"""The emulated REST API (``/api/v10``): the routes a bot framework needs, with Discord's
error shapes, authentication and rate limits, recording every call."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import typing

import orjson
from aiohttp import web

from playground.discord import gateway, ratelimit, records, world

Json = dict[str, typing.Any]
Handler = typing.Callable[
    ["RestApi", web.Request, dict[str, str], typing.Any], Json | list[Json] | None
]

#: Discord answers an interaction only within 3 s of creating it; follow-ups for 15 minutes.
INTERACTION_DEADLINE: typing.Final[float] = 3.0
INTERACTION_TOKEN_TTL: typing.Final[float] = 15 * 60.0
#: Message flag: seen only by the user who ran the interaction.
EPHEMERAL: typing.Final[int] = 1 << 6
MAX_CONTENT: typing.Final[int] = 2000
_MENTION: typing.Final = re.compile(r"<@!?(\d+)>")


class DiscordHTTPError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: Json | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


@dataclasses.dataclass(slots=True)
class Interaction:
    id: int
    token: str
    created_at: float
    payload: Json
    response_type: int | None = None
    response: Json | None = None
    original: Json | None = None
    followups: list[Json] = dataclasses.field(default_factory=list)
    created_at_wall: float = dataclasses.field(default_factory=time.time)
    """When Discord created it, on the clock the records use."""
    answered: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set when the bot's initial response arrives."""


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    exempt_global: bool
    major: str


_ROUTES: list[Route] = []


def route(
    method: str, template: str, *, auth: bool = True, exempt_global: bool = False
) -> typing.Callable[[Handler], Handler]:
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
    majors = [m for m in ("channel_id", "guild_id", "webhook_token") if "{" + m + "}" in template]

    def register(handler: Handler) -> Handler:
        _ROUTES.append(
            Route(
                method,
                template,
                re.compile(regex),
                handler,
                auth,
                exempt_global,
                majors[0] if majors else "",
            )
        )
        return handler

    return register


def _snowflake(params: dict[str, str], name: str) -> int:
    try:
        return int(params[name])
    except ValueError:
        raise DiscordHTTPError(
            400, 50035, "Invalid Form Body", {name: {"_errors": [{"code": "NUMBER_TYPE_COERCE"}]}}
        ) from None


def _message_body(body: typing.Any) -> Json:
    if not isinstance(body, dict):
        raise DiscordHTTPError(400, 50109, "The request body contains invalid JSON.")
    content = body.get("content") or ""
    if not isinstance(content, str):
        raise DiscordHTTPError(400, 50035, "Invalid Form Body", {"content": {"_errors": []}})
    if len(content) > MAX_CONTENT:
        raise DiscordHTTPError(
            400,
            50035,
            "Invalid Form Body",
            {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}},
        )
    if not content and not body.get("embeds") and not body.get("components"):
        raise DiscordHTTPError(400, 50006, "Cannot send an empty message")
    return body


class RestApi:
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
        self.world = world_
        self.records = records_
        self.gateway = gateway_
        self.limiter = limiter
        self.token = token
        self.interactions: dict[int, Interaction] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        matched: tuple[Route, dict[str, str]] | None = None
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
            template, params.get(spec.major, ""), exempt_global=spec.exempt_global
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
        except DiscordHTTPError as exc:
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

    # --- helpers used by routes and by the emulator's control API ---------------------------

    def channel(self, channel_id: int) -> Json:
        channel = self.world.channels.get(channel_id)
        if channel is None:
            raise DiscordHTTPError(404, 10003, "Unknown Channel")
        return channel

    def guild(self, guild_id: int) -> Json:
        guild = self.world.guilds.get(guild_id)
        if guild is None:
            raise DiscordHTTPError(404, 10004, "Unknown Guild")
        return guild

    def post_message(self, channel_id: int, author: Json, body: Json) -> Json:
        channel = self.channel(channel_id)
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        member = None
        if guild_id is not None:
            member = self.world.members[guild_id].get(int(author["id"]))
        message = self.world.make_message(
            channel_id, author, body.get("content") or "", member=member
        )
        for key in ("embeds", "components", "tts", "flags"):
            if key in body:
                message[key] = body[key]
        number_components(message["components"])
        message["mentions"] = [
            self.world.users[int(user_id)]
            for user_id in _MENTION.findall(message["content"])
            if int(user_id) in self.world.users
        ]
        if guild_id is not None and member is not None:
            message["member"] = {k: v for k, v in member.items() if k != "user"}
        self.world.message_changed("create", message)
        if not int(message.get("flags") or 0) & EPHEMERAL:
            # Only the user who ran the interaction sees an ephemeral message; no bot is sent it.
            self.gateway.dispatch("MESSAGE_CREATE", message, guild_id=guild_id)
        return message

    def update_message(self, message: Json, body: Json) -> Json:
        """The bot edits one of its messages (or the one a component is on)."""
        fields = ("content", "embeds", "components")
        message.update({k: v for k, v in _message_body(body).items() if k in fields})
        number_components(message.get("components") or [])
        message["edited_timestamp"] = world.iso_now()
        self.world.message_changed("update", message)
        return message

    def interaction(self, interaction_id: int, token: str) -> Interaction:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise DiscordHTTPError(404, 10062, "Unknown interaction")
        return interaction

    def interaction_by_token(self, token: str) -> Interaction:
        for interaction in self.interactions.values():
            if interaction.token == token:
                if time.monotonic() - interaction.created_at > INTERACTION_TOKEN_TTL:
                    break
                return interaction
        raise DiscordHTTPError(404, 10015, "Unknown Webhook")


# --- routes ------------------------------------------------------------------------------------


@route("GET", "/gateway", auth=False)
def _get_gateway(_api: RestApi, r: web.Request, _p: dict[str, str], _b: typing.Any) -> Json:
    return {"url": gateway.gateway_url(r.host)}


@route("GET", "/gateway/bot")
def _get_gateway_bot(api: RestApi, r: web.Request, _p: dict[str, str], _b: typing.Any) -> Json:
    return {
        "url": gateway.gateway_url(r.host),
        "shards": api.gateway.options.recommended_shards,
        "session_start_limit": api.gateway.session_start_limit(),
    }


@route("GET", "/users/@me")
def _get_me(api: RestApi, _r: web.Request, _p: dict[str, str], _b: typing.Any) -> Json:
    return api.world.bot_user


@route("GET", "/users/{user_id}")
def _get_user(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> Json:
    user = api.world.users.get(_snowflake(p, "user_id"))
    if user is None:
        raise DiscordHTTPError(404, 10013, "Unknown User")
    return user


@route("GET", "/oauth2/applications/@me")
def _get_application(api: RestApi, _r: web.Request, _p: dict[str, str], _b: typing.Any) -> Json:
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


@route("GET", "/channels/{channel_id}")
def _get_channel(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> Json:
    return api.channel(_snowflake(p, "channel_id"))


@route("POST", "/channels/{channel_id}/messages")
def _create_message(api: RestApi, _r: web.Request, p: dict[str, str], b: typing.Any) -> Json:
    return api.post_message(_snowflake(p, "channel_id"), api.world.bot_user, _message_body(b))


def _stored_message(api: RestApi, p: dict[str, str]) -> Json:
    channel_id = _snowflake(p, "channel_id")
    api.channel(channel_id)
    message = api.world.messages[channel_id].get(_snowflake(p, "message_id"))
    if message is None:
        raise DiscordHTTPError(404, 10008, "Unknown Message")
    return message


@route("GET", "/channels/{channel_id}/messages/{message_id}")
def _get_message(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> Json:
    return _stored_message(api, p)


@route("PATCH", "/channels/{channel_id}/messages/{message_id}")
def _edit_message(api: RestApi, _r: web.Request, p: dict[str, str], b: typing.Any) -> Json:
    message = _stored_message(api, p)
    if message["author"]["id"] != str(api.world.bot_id):
        raise DiscordHTTPError(403, 50005, "Cannot edit a message authored by another user")
    return api.update_message(message, b)


@route("DELETE", "/channels/{channel_id}/messages/{message_id}")
def _delete_message(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> None:
    message = _stored_message(api, p)
    del api.world.messages[int(message["channel_id"])][int(message["id"])]
    api.world.message_changed("delete", message)


@route("GET", "/guilds/{guild_id}")
def _get_guild(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> Json:
    return api.guild(_snowflake(p, "guild_id"))


@route("GET", "/guilds/{guild_id}/channels")
def _get_guild_channels(
    api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> list[Json]:
    guild_id = _snowflake(p, "guild_id")
    api.guild(guild_id)
    return api.world.guild_channels(guild_id)


@route("GET", "/guilds/{guild_id}/roles")
def _get_roles(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> list[Json]:
    return list(api.guild(_snowflake(p, "guild_id"))["roles"])


@route("GET", "/guilds/{guild_id}/members/{user_id}")
def _get_member(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> Json:
    guild_id = _snowflake(p, "guild_id")
    api.guild(guild_id)
    member = api.world.members[guild_id].get(_snowflake(p, "user_id"))
    if member is None:
        raise DiscordHTTPError(404, 10007, "Unknown Member")
    return member


# --- application commands ----------------------------------------------------------------------


def _command_scope(api: RestApi, p: dict[str, str]) -> dict[int, Json]:
    if _snowflake(p, "application_id") != api.world.application_id:
        raise DiscordHTTPError(403, 50001, "Missing Access")
    guild_id = _snowflake(p, "guild_id") if "guild_id" in p else None
    if guild_id is not None:
        api.guild(guild_id)
    return api.world.commands.setdefault(guild_id, {})


def _make_command(api: RestApi, p: dict[str, str], body: typing.Any) -> Json:
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise DiscordHTTPError(400, 50035, "Invalid Form Body", {"name": {"_errors": []}})
    name = body["name"]
    if not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower():
        raise DiscordHTTPError(400, 50035, "Invalid Form Body", {"name": {"_errors": []}})
    command = {
        "id": str(api.world.snowflakes.next()),
        "application_id": str(api.world.application_id),
        "version": str(api.world.snowflakes.next()),
        "type": body.get("type", 1),
        "name": name,
        "description": body.get("description", ""),
        "options": body.get("options", []),
        "default_member_permissions": body.get("default_member_permissions"),
        "nsfw": body.get("nsfw", False),
        "contexts": body.get("contexts"),
        "integration_types": body.get("integration_types", [0]),
    }
    if "guild_id" in p:
        command["guild_id"] = p["guild_id"]
    return command


def _list_commands(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> list[Json]:
    return list(_command_scope(api, p).values())


def _create_command(api: RestApi, _r: web.Request, p: dict[str, str], b: typing.Any) -> Json:
    scope = _command_scope(api, p)
    command = _make_command(api, p, b)
    for existing_id, existing in list(scope.items()):
        if existing["name"] == command["name"] and existing["type"] == command["type"]:
            command["id"] = existing["id"]
            del scope[existing_id]
    scope[int(command["id"])] = command
    return command


def _overwrite_commands(
    api: RestApi, _r: web.Request, p: dict[str, str], b: typing.Any
) -> list[Json]:
    scope = _command_scope(api, p)
    if not isinstance(b, list):
        raise DiscordHTTPError(400, 50035, "Invalid Form Body")
    by_name = {(c["name"], c["type"]): c for c in scope.values()}
    new = []
    for item in b:
        command = _make_command(api, p, item)
        previous = by_name.get((command["name"], command["type"]))
        if previous is not None:
            command["id"] = previous["id"]
        new.append(command)
    scope.clear()
    scope.update({int(c["id"]): c for c in new})
    return new


def _delete_command(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> None:
    if _command_scope(api, p).pop(_snowflake(p, "command_id"), None) is None:
        raise DiscordHTTPError(404, 10063, "Unknown application command")


for _prefix in (
    "/applications/{application_id}",
    "/applications/{application_id}/guilds/{guild_id}",
):
    route("GET", f"{_prefix}/commands")(_list_commands)
    route("POST", f"{_prefix}/commands")(_create_command)
    route("PUT", f"{_prefix}/commands")(_overwrite_commands)
    route("DELETE", f"{_prefix}/commands/{{command_id}}")(_delete_command)


# --- interactions and their webhooks -----------------------------------------------------------

_CALLBACK_TYPES: typing.Final = frozenset({1, 4, 5, 6, 7, 8, 9, 10, 12})


@route(
    "POST",
    "/interactions/{interaction_id}/{interaction_token}/callback",
    auth=False,
    exempt_global=True,
)
def _interaction_callback(
    api: RestApi, request: web.Request, p: dict[str, str], b: typing.Any
) -> Json | None:
    interaction = api.interaction(_snowflake(p, "interaction_id"), p["interaction_token"])
    if time.monotonic() - interaction.created_at > INTERACTION_DEADLINE:
        # After 3 s Discord has already shown "The application did not respond".
        raise DiscordHTTPError(404, 10062, "Unknown interaction")
    if interaction.response_type is not None:
        raise DiscordHTTPError(400, 40060, "Interaction has already been acknowledged.")
    if not isinstance(b, dict) or b.get("type") not in _CALLBACK_TYPES:
        raise DiscordHTTPError(400, 50035, "Invalid Form Body", {"type": {"_errors": []}})
    interaction.response_type = b["type"]
    interaction.response = b
    interaction.answered.set()
    channel_id = int(interaction.payload["channel_id"])
    if b["type"] == 4:
        data = _message_body(b.get("data") or {})
        interaction.original = api.post_message(channel_id, api.world.bot_user, data)
    elif b["type"] in (6, 7) and "message" in interaction.payload:
        # A component's response: the original is the message the component is on; type 7
        # updates it now, type 6 promises to (through PATCH .../messages/@original).
        clicked = api.world.messages.get(channel_id, {}).get(
            int(interaction.payload["message"]["id"])
        )
        if clicked is not None:
            interaction.original = clicked
            if b["type"] == 7:
                api.update_message(clicked, b.get("data") or {})
    if request.query.get("with_response", "").lower() != "true":
        return None
    # ?with_response=true: 200 with an interaction callback response instead of 204.
    flags = int((b.get("data") or {}).get("flags") or 0)
    answer: Json = {
        "interaction": {
            "id": str(interaction.id),
            "type": interaction.payload["type"],
            "response_message_loading": b["type"] in (5, 6),
            "response_message_ephemeral": bool(flags & 64),
        },
        "resource": {"type": b["type"]},
    }
    if interaction.original is not None:
        answer["interaction"]["response_message_id"] = interaction.original["id"]
        answer["resource"]["message"] = interaction.original
    return answer


@route("POST", "/webhooks/{application_id}/{webhook_token}", auth=False, exempt_global=True)
def _followup(api: RestApi, _r: web.Request, p: dict[str, str], b: typing.Any) -> Json:
    interaction = api.interaction_by_token(p["webhook_token"])
    if interaction.response_type is None:
        raise DiscordHTTPError(404, 10015, "Unknown Webhook")
    body = _message_body(b)
    settles_deferral = interaction.original is None and interaction.response_type == 5
    if settles_deferral:
        # The first follow-up of a deferred response is that response: as visible as the
        # deferral said, whatever its own flags say.
        body["flags"] = _deferred_flags(interaction)
    message = api.post_message(int(interaction.payload["channel_id"]), api.world.bot_user, body)
    if settles_deferral:
        interaction.original = message
    else:
        interaction.followups.append(message)
    return message


def _deferred_flags(interaction: Interaction) -> int:
    data = (interaction.response or {}).get("data") or {}
    return int(data.get("flags") or 0) & EPHEMERAL


def _original(api: RestApi, p: dict[str, str]) -> tuple[Interaction, Json | None]:
    interaction = api.interaction_by_token(p["webhook_token"])
    return interaction, interaction.original


def _sent_original(api: RestApi, p: dict[str, str]) -> tuple[Interaction, Json]:
    """The interaction and its original message, which must exist (404 Unknown Message)."""
    interaction, original = _original(api, p)
    if original is None:
        raise DiscordHTTPError(404, 10008, "Unknown Message")
    return interaction, original


@route(
    "GET",
    "/webhooks/{application_id}/{webhook_token}/messages/@original",
    auth=False,
    exempt_global=True,
)
def _get_original(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> Json:
    return _sent_original(api, p)[1]


@route(
    "PATCH",
    "/webhooks/{application_id}/{webhook_token}/messages/@original",
    auth=False,
    exempt_global=True,
)
def _edit_original(api: RestApi, _r: web.Request, p: dict[str, str], b: typing.Any) -> Json:
    interaction, original = _original(api, p)
    if interaction.response_type is None:
        raise DiscordHTTPError(404, 10015, "Unknown Webhook")
    body = _message_body(b)
    if original is None:
        # Editing the original of a deferred response sends it, as visible as deferred.
        body["flags"] = _deferred_flags(interaction)
        interaction.original = api.post_message(
            int(interaction.payload["channel_id"]), api.world.bot_user, body
        )
        return interaction.original
    return api.update_message(original, body)


@route(
    "DELETE",
    "/webhooks/{application_id}/{webhook_token}/messages/@original",
    auth=False,
    exempt_global=True,
)
def _delete_original(api: RestApi, _r: web.Request, p: dict[str, str], _b: typing.Any) -> None:
    interaction, original = _sent_original(api, p)
    channel_messages = api.world.messages.get(int(original["channel_id"]), {})
    channel_messages.pop(int(original["id"]), None)
    interaction.original = None
    api.world.message_changed("delete", original)


def _remaining(headers: dict[str, str]) -> int | None:
    raw = headers.get("X-RateLimit-Remaining")
    return int(raw) if raw is not None else None


def number_components(components: list[Json]) -> None:
    """Give every component without one Discord's sequential ``id`` (1, 2, ... in the order
    they appear, nested ones included), as Discord does when a message is sent."""
    used = set()
    pending = list(components)
    ordered = []
    while pending:
        component = pending.pop(0)
        ordered.append(component)
        if "id" in component:
            used.add(component["id"])
        pending[:0] = list(component.get("components") or [])
    next_id = 1
    for component in ordered:
        if "id" not in component:
            while next_id in used:
                next_id += 1
            component["id"] = next_id
            used.add(next_id)
