"""The playground: the Discord and Lavalink emulators as a local Discord, with a web page.

One port serves the emulated Discord (``/gateway``, ``/api/v10``), the chat page (``/``),
its JSON API (``/playground/api/...``), the live feed (``/playground/live``, a WebSocket)
and ``/playground/connect``, where a gateway or worker without a token learns the token and
URLs (``shared.playground``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import pathlib
import typing

import orjson
from aiohttp import web

from playground.discord import emulator, gateway, rest
from playground.lavalink import emulator as lavalink_emulator
from playground.web import feed
from shared import playground as link
from shared import sharding

if typing.TYPE_CHECKING:
    from playground import supervisor as supervisor_module

Json = dict[str, typing.Any]

_STATIC = pathlib.Path(__file__).parent / "static"
#: Messages per channel a page is given when it loads.
HISTORY: typing.Final[int] = 100
#: Messages per channel the playground keeps (it runs for days; the oldest go).
KEPT: typing.Final[int] = 1000
#: Discord shows "The application did not respond" after this long without an answer.
INTERACTION_DEADLINE: typing.Final[float] = 3.0
_MAX_TEXT: typing.Final[int] = 2000
TEST_USERS: typing.Final = ("alice", "bob", "carol")


class BadRequest(web.HTTPBadRequest):
    def __init__(self, reason: str) -> None:
        super().__init__(
            text=orjson.dumps({"error": reason}).decode(), content_type="application/json"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class PlaygroundOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    shard_count: int = 2
    """What ``GET /gateway/bot`` recommends: the platform starts with this many shards."""
    heartbeat_interval: float = 41.25


class Playground:
    """Owns the emulators, seeds a small world, and serves the page."""

    def __init__(
        self,
        options: PlaygroundOptions | None = None,
        *,
        supervisor: supervisor_module.Supervisor | None = None,
    ) -> None:
        self.options = options or PlaygroundOptions()
        self.supervisor = supervisor
        self.discord = emulator.DiscordEmulator(
            host=self.options.host,
            port=self.options.port,
            gateway_options=gateway.GatewayOptions(
                recommended_shards=self.options.shard_count,
                heartbeat_interval=self.options.heartbeat_interval,
            ),
            routes=self._routes,
        )
        self.lavalink = lavalink_emulator.LavalinkEmulator(host=self.options.host)
        self.users: list[Json] = []
        self.feed = feed.LiveFeed(self._shards)
        #: message id -> "alice used /ping", for the bot's answers to slash commands.
        self._invoked: collections.OrderedDict[str, str] = collections.OrderedDict()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._seed()
        self.discord.records.listeners.append(self.feed.on_record)
        self.discord.world.message_listeners.append(self._on_message)
        await self.lavalink.start()
        await self.discord.start()

    async def close(self) -> None:
        await self.feed.close()
        await self.discord.close()
        await self.lavalink.close()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "::") else self.options.host
        return f"http://{host}:{self.discord.port}"

    def _seed(self) -> None:
        world = self.discord.world
        self.users = [world.add_user(name) for name in TEST_USERS]
        count = self.options.shard_count
        home = self.discord.add_guild("Shardline Playground", shard=(0, count), channels=0)
        home_id = int(home["id"])
        for name in ("general", "commands"):
            world.add_channel(home_id, name)
        world.add_channel(home_id, "Lounge", kind=2)
        beta = self.discord.add_guild("Beta Testers", shard=(count - 1, count), channels=0)
        world.add_channel(int(beta["id"]), "general")
        for guild in (home, beta):
            for user in self.users:
                world.add_member(int(guild["id"]), user)
        for title, author, length in (
            ("Never Gonna Give You Up", "Rick Astley", 213_000),
            ("Lo-fi beats to shard to", "Shardline", 3_600_000),
            ("Resume, Don't Identify", "The Heartbeats", 185_000),
        ):
            self.lavalink.add_track(title, length, author=author)

    # --- routes -----------------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", _STATIC, append_version=True)
        app.router.add_get(link.CONNECT_PATH, self._connect)
        app.router.add_get("/playground/live", self.feed.live)
        app.router.add_get("/playground/api/state", self._state)
        app.router.add_post("/playground/api/messages", self._post_message)
        app.router.add_post("/playground/api/commands", self._post_command)
        app.router.add_post("/playground/api/autocomplete", self._post_autocomplete)
        app.router.add_post("/playground/api/components", self._post_component)
        app.router.add_post("/playground/api/modals", self._post_modal)
        app.router.add_post("/playground/api/scenarios/{name}", self._post_scenario)

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(_STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _connect(self, request: web.Request) -> web.Response:
        """Token and URLs for a gateway or worker, on the host it reached us by."""
        hostname = request.url.host or "127.0.0.1"
        host = f"[{hostname}]" if ":" in hostname else hostname
        answer = link.Connection(
            token=self.discord.token,
            api_url=f"http://{request.host}/api/v10",
            lavalink_url=f"http://{host}:{self.lavalink.port}",
            lavalink_password=self.lavalink.password,
        )
        return web.json_response(answer.to_json())

    async def _state(self, _request: web.Request) -> web.Response:
        world = self.discord.world
        count = self.options.shard_count
        guilds = []
        for guild_id, guild in world.guilds.items():
            channels = [
                {"id": c["id"], "name": c["name"], "type": c["type"]}
                for c in world.guild_channels(guild_id)
            ]
            guilds.append(
                {
                    "id": guild["id"],
                    "name": guild["name"],
                    "shard": sharding.shard_for_guild(guild_id, count),
                    "members": len(world.members.get(guild_id, {})),
                    "channels": channels,
                }
            )
        messages = {
            str(channel_id): [
                feed.message_view(m, self._invoked.get(m["id"]))
                for m in list(by_id.values())[-HISTORY:]
            ]
            for channel_id, by_id in world.messages.items()
        }
        body = {
            "bot": world.bot_user,
            "users": self.users,
            "guilds": guilds,
            "messages": messages,
            "commands": self._commands(),
            "shards": self._shards(),
            "panel": list(self.feed.panel),
            "counters": dict(self.feed.counters),
            "processes": self.supervisor.snapshot() if self.supervisor is not None else None,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    def _commands(self) -> list[Json]:
        found: dict[str, Json] = {}
        for scope in self.discord.world.commands.values():
            for command in scope.values():
                if command.get("type", 1) == 1:
                    found[command["name"]] = command
        return sorted(found.values(), key=lambda c: str(c["name"]))

    def _shards(self) -> list[Json]:
        shards = []
        for shard_id, session in sorted(self.discord.gateway.shards.items()):
            connection = session.connection
            shards.append(
                {
                    "id": shard_id,
                    "count": session.shard_count,
                    "session": session.session_id[:8],
                    "seq": session.seq,
                    "connected": connection is not None and not connection.closed,
                }
            )
        return shards

    # --- what users do ----------------------------------------------------------------------

    async def _json(self, request: web.Request) -> Json:
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            raise BadRequest("expected a JSON body") from None
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object")
        return body

    def _user(self, body: Json) -> Json:
        user = self.discord.world.users.get(_id(body, "user_id"))
        if user is None or user.get("bot"):
            raise BadRequest("unknown user")
        return user

    def _channel(self, body: Json) -> int:
        channel_id = _id(body, "channel_id")
        channel = self.discord.world.channels.get(channel_id)
        if channel is None or channel.get("type") != 0:
            raise BadRequest("unknown text channel")
        return channel_id

    async def _post_message(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        user, channel_id = self._user(body), self._channel(body)
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise BadRequest("type something first")
        if len(content) > _MAX_TEXT:
            raise BadRequest(f"messages are at most {_MAX_TEXT} characters")
        message = self.discord.send_message(channel_id, user, content)
        return web.json_response({"id": message["id"]})

    async def _post_command(self, request: web.Request) -> web.Response:
        interaction, name, channel_id = await self._command_interaction(request, kind=2)
        self._watch(interaction, f"/{name}", channel_id)
        return web.json_response({"id": str(interaction.id)})

    async def _post_autocomplete(self, request: web.Request) -> web.Response:
        """Type 4 interaction; waits (up to Discord's 3 s) for the bot's type 8 answer."""
        interaction, _, _ = await self._command_interaction(request, kind=4)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(interaction.answered.wait(), INTERACTION_DEADLINE)
        choices = ((interaction.response or {}).get("data") or {}).get("choices") or []
        return web.json_response({"choices": choices})

    async def _post_component(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        user, channel_id = self._user(body), self._channel(body)
        message = self.discord.world.messages[channel_id].get(_id(body, "message_id"))
        if message is None:
            raise BadRequest("unknown message")
        custom_id = body.get("custom_id")
        if not isinstance(custom_id, str) or not _has_component(message, custom_id):
            raise BadRequest("that message has no such component")
        values = body.get("values")
        if values is not None and not (
            isinstance(values, list) and all(isinstance(v, str) for v in values)
        ):
            raise BadRequest("values must be a list of strings")
        interaction = self.discord.click(message, user, custom_id, values=values)
        self._watch(interaction, "the click", channel_id)
        return web.json_response({"id": str(interaction.id)})

    async def _post_modal(self, request: web.Request) -> web.Response:
        """A user submits the modal the bot opened on interaction ``interaction_id``."""
        body = await self._json(request)
        user = self._user(body)
        opened = self.discord.rest.interactions.get(_id(body, "interaction_id"))
        if opened is None or opened.response_type != 9:
            raise BadRequest("the bot opened no modal on that interaction")
        values = body.get("values") or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise BadRequest("values must map each text input's custom_id to a string")
        submit = self.discord.submit_modal(opened, user, values)
        channel_id = int(opened.payload["channel_id"])
        self._watch(submit, "the form", channel_id)
        return web.json_response({"id": str(submit.id)})

    async def _command_interaction(
        self, request: web.Request, *, kind: int
    ) -> tuple[rest.Interaction, str, int]:
        """A user runs (kind 2) or types an option of (kind 4) the command the body names."""
        body = await self._json(request)
        user, channel_id = self._user(body), self._channel(body)
        command = self._command(body.get("name"))
        options = body.get("options") or []
        if not isinstance(options, list):
            raise BadRequest("options must be a list")
        if kind == 2:  # APPLICATION_COMMAND: the emulator resolves what its options name
            try:
                interaction = self.discord.send_interaction(
                    channel_id, user, command["name"], options
                )
            except (ValueError, TypeError, AttributeError) as exc:  # ids naming nothing
                raise BadRequest(f"bad options: {exc}") from None
            return interaction, str(command["name"]), channel_id
        data = {"id": command["id"], "name": command["name"], "type": 1, "options": options}
        interaction = self.discord.send_interaction(
            channel_id, user, command["name"], kind=kind, data=data
        )
        return interaction, str(command["name"]), channel_id

    def _command(self, name: typing.Any) -> Json:
        for command in self._commands():
            if command["name"] == name:
                return command
        raise BadRequest(f"the bot has no /{name} command (were commands synced?)")

    def _watch(self, interaction: rest.Interaction, what: str, channel_id: int) -> None:
        """Tell the page when the bot answered, deferred, or did not answer in time."""

        async def watch() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interaction.answered.wait(), INTERACTION_DEADLINE)
            state = {None: "failed", 5: "deferred", 6: "acknowledged", 9: "modal"}.get(
                interaction.response_type, "answered"
            )
            event: Json = {
                "type": "interaction",
                "id": str(interaction.id),
                "what": what,
                "state": state,
                "channel_id": str(channel_id),
            }
            if state == "modal" and interaction.response is not None:
                event["modal"] = interaction.response.get("data")  # submit: POST .../modals
            self.feed.publish(event)

        self.feed.spawn(watch())

    # --- scenarios --------------------------------------------------------------------------

    async def _post_scenario(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await self._json(request)
        if name == "add-guild":
            return web.json_response(self._add_guild(body))
        if name in ("reconnect", "invalid-session"):
            shard_id = _int(body, "shard", 0, 4095)
            if shard_id not in self.discord.connected_shards():
                raise BadRequest(f"shard {shard_id} is not connected")
            if name == "reconnect":
                self.discord.force_reconnect(shard_id)
            else:
                self.discord.force_invalid_session(
                    shard_id, resumable=bool(body.get("resumable", False))
                )
            self.feed.note("scenario", f"{name} sent to shard {shard_id}")
            return web.json_response({"ok": True})
        if self.supervisor is None:
            raise BadRequest("this playground runs no processes (started with --no-platform)")
        try:
            done = await self.supervisor.act(name, str(body.get("process", "")))
        except LookupError as exc:
            raise BadRequest(str(exc)) from None
        self.feed.note("scenario", done)
        return web.json_response({"ok": True, "done": done})

    def _add_guild(self, body: Json) -> Json:
        name = str(body.get("name") or "New guild").strip()[:100] or "New guild"
        members = _int(body, "members", 0, 10_000)
        count = self.options.shard_count
        shard_id = _int(body, "shard", 0, count - 1)
        world = self.discord.world
        guild = self.discord.add_guild(name, shard=(shard_id, count), channels=0)
        guild_id = int(guild["id"])
        world.add_channel(guild_id, "general")
        for user in self.users:
            world.add_member(guild_id, user)
        for index in range(members):
            world.add_member(guild_id, world.add_user(f"member{index + 1}"))
        # The bot joins: GUILD_CREATE on the guild's shard, as Discord sends it.
        self.discord.dispatch(
            "GUILD_CREATE", world.guild_create_payload(guild_id), guild_id=guild_id
        )
        self.feed.note(
            "scenario", f"guild {name!r} with {members} members added on shard {shard_id}"
        )
        return {"id": guild["id"], "shard": shard_id}

    def _on_message(self, kind: str, message: Json) -> None:
        if kind == "create":
            self._note_invocation(message)
            kept = self.discord.world.messages.get(int(message["channel_id"]), {})
            while len(kept) > KEPT:
                kept.pop(next(iter(kept)))
        view = feed.message_view(message, self._invoked.get(message["id"]))
        self.feed.publish({"type": "message", "kind": kind, "message": view})

    def _note_invocation(self, message: Json) -> None:
        """A bot message that answers a slash command shows who ran which (as Discord does):
        it is the one being posted for an answered interaction without its message yet."""
        if not message["author"].get("bot"):
            return
        recent = list(self.discord.rest.interactions.values())[-50:]
        for interaction in reversed(recent):
            payload = interaction.payload
            if (
                payload["type"] == 2
                and payload["channel_id"] == message["channel_id"]
                and interaction.response_type in (4, 5)
                and interaction.original is None
            ):
                user = payload["member"]["user"]
                name = user.get("global_name") or user["username"]
                self._invoked[message["id"]] = f"{name} used /{payload['data']['name']}"
                while len(self._invoked) > KEPT:
                    self._invoked.popitem(last=False)
                return

    def on_process(self, text: str) -> None:
        """The supervisor's news (a process started, stopped, exited) for the panel."""
        self.feed.note(
            "process", text, processes=self.supervisor.snapshot() if self.supervisor else []
        )


# --- helpers -----------------------------------------------------------------------------------


def _id(body: Json, name: str) -> int:
    raw = body.get(name)
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a snowflake") from None
    if not 0 < value < 2**64:
        raise BadRequest(f"{name} must be a snowflake")
    return value


def _int(body: Json, name: str, minimum: int, maximum: int) -> int:
    raw = body.get(name, minimum)
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise BadRequest(f"{name} must be a whole number")
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be from {minimum} to {maximum}")
    return value


def _has_component(message: Json, custom_id: str) -> bool:
    pending = list(message.get("components") or [])
    while pending:
        component = pending.pop()
        if component.get("custom_id") == custom_id and not component.get("disabled"):
            return True
        pending.extend(component.get("components") or [])
    return False
