"""The emulator as one object: start it, point a bot at it, drive it, read back what happened.

::

    async with DiscordEmulator() as discord:  # discord.token is the bot's token
        guild = discord.add_guild("test")
        ...  # DISCORD_API_URL=discord.api_url
        discord.send_message(channel_id, user, "!ping")
        await discord.wait_for(lambda: discord.records.rest)
"""

from __future__ import annotations

import asyncio
import itertools
import time
import typing

from aiohttp import web

from playground.discord import gateway, interaction_data, protocol, ratelimit, records, rest, world
from shared import sharding

Json = dict[str, typing.Any]


class DiscordEmulator:
    """Gateway WebSocket and REST API of an emulated Discord on 127.0.0.1."""

    def __init__(
        self,
        *,
        token: str | None = None,
        gateway_options: gateway.GatewayOptions | None = None,
        rate_limits: ratelimit.RateLimitOptions | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: typing.Callable[[web.Application], None] | None = None,
        rate_limit_clock: typing.Callable[[], float] = time.monotonic,
    ) -> None:
        """``routes`` adds more routes to the same server (the playground's page and API);
        ``rate_limit_clock`` is what the REST rate limits count in (seconds; tests fake it)."""
        self._routes = routes
        self.host = host
        self.port = port
        app_id = world.user_id_of_token(token) if token is not None else None
        self.world = world.World(application_id=app_id)
        self.token = token if token is not None else world.make_bot_token(self.world.bot_id)
        token = self.token
        self.records = records.Records()
        #: Files users attached to ATTACHMENT options, by attachment id.
        self.uploads: dict[int, Json] = {}
        self.gateway = gateway.GatewayServer(
            self.world, self.records, gateway_options or gateway.GatewayOptions(), token=token
        )
        self.limiter = ratelimit.RestRateLimiter(
            rate_limits or ratelimit.RateLimitOptions(), clock=rate_limit_clock
        )
        self.rest = rest.RestApi(self.world, self.records, self.gateway, self.limiter, token=token)
        self._runner: web.AppRunner | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/resume", self.gateway.handle)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.rest.handle)
        if self._routes is not None:
            self._routes(app)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        # What a client on this address is handed (clients elsewhere get their own host's).
        self.gateway.base_url = gateway.gateway_url(f"{self.host}:{self.port}")
        self.gateway.resume_url = gateway.resume_url(f"{self.host}:{self.port}")
        self.gateway.start()

    async def close(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> typing.Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def api_url(self) -> str:
        """What ``DISCORD_API_URL`` (or hikari's ``rest_url``) should be."""
        return f"http://{self.host}:{self.port}/api/v10"

    # --- world ------------------------------------------------------------------------------

    def add_guild(
        self, name: str = "guild", *, shard: tuple[int, int] | None = None, channels: int = 1
    ) -> Json:
        """Add a guild; ``shard=(id, count)`` picks an id that Discord routes to that shard."""
        guild_id = self.world.snowflakes.for_shard(*shard) if shard is not None else None
        return self.world.add_guild(name, guild_id=guild_id, channels=channels)

    def add_user(self, name: str, *, bot: bool = False) -> Json:
        return self.world.add_user(name, bot=bot)

    def create_thread(
        self,
        parent_id: int,
        owner: Json,
        name: str = "thread",
        *,
        private: bool = False,
        add_bot: bool = False,
    ) -> Json:
        """A user starts a thread: THREAD_CREATE (Gateway Events > Thread Create), the thread
        channel with ``newly_created: true``, and, when the bot is added to it, the bot's
        thread member (Thread Member Object: ``id``, ``user_id``, ``join_timestamp``,
        ``flags``). A private thread the bot is not added to is not "relevant to the current
        user" and is not sent (the bot's MANAGE_THREADS, which would show it, is not modelled)."""
        thread = self.world.add_thread(parent_id, owner, name, private=private)
        guild_id = int(thread["guild_id"])
        payload: Json = {**thread, "newly_created": True}
        if add_bot:
            payload["member"] = {
                "id": thread["id"],
                "user_id": str(self.world.bot_id),
                "join_timestamp": world.iso_now(),
                "flags": 0,
            }
        if add_bot or not private:
            self.gateway.dispatch("THREAD_CREATE", payload, guild_id=guild_id)
        return thread

    def open_dm(self, user: Json) -> Json:
        """The DM channel between ``user`` and the bot; messages in it go to shard 0 only."""
        return self.world.open_dm(user)

    def add_member(self, guild_id: int, user: Json, *, announce: bool = True) -> Json:
        member = self.world.add_member(guild_id, user)
        if announce:
            self.gateway.dispatch(
                "GUILD_MEMBER_ADD", {**member, "guild_id": str(guild_id)}, guild_id=guild_id
            )
        return member

    def add_voice_channel(self, guild_id: int, name: str = "General") -> Json:
        channel = self.world.add_channel(guild_id, name, kind=2)
        self.gateway.dispatch("CHANNEL_CREATE", channel, guild_id=guild_id)
        return channel

    def join_voice(self, guild_id: int, user: Json, channel_id: int | None) -> Json:
        """A user joins (or, with ``None``, leaves) a voice channel: VOICE_STATE_UPDATE."""
        state = self.world.set_voice_state(
            guild_id, int(user["id"]), channel_id, f"user-session-{user['id']}"
        )
        self.gateway.dispatch("VOICE_STATE_UPDATE", state, guild_id=guild_id)
        return state

    def move_voice_server(self, guild_id: int) -> Json | None:
        """Discord moves the bot's call to another voice server (a new VOICE_SERVER_UPDATE)."""
        return self.gateway.voice_server_update(guild_id)

    def channels_of(self, guild_id: int) -> list[Json]:
        return self.world.guild_channels(guild_id)

    # --- what users do ----------------------------------------------------------------------

    def send_message(
        self, channel_id: int, author: Json, content: str, *, files: list[Json] | None = None
    ) -> Json:
        """A user posts a message (with ``files`` from :meth:`upload`, as its attachments):
        stored, and dispatched as MESSAGE_CREATE to its shard."""
        channel = self.world.channels[channel_id]
        guild_id = channel.get("guild_id")
        if guild_id is not None and int(author["id"]) not in self.world.members[int(guild_id)]:
            self.world.add_member(int(guild_id), author)
        attachments = [{k: v for k, v in f.items() if k != "ephemeral"} for f in files or ()]
        return self.rest.post_message(
            channel_id, author, {"content": content}, attachments=attachments
        )

    def send_interaction(
        self,
        channel_id: int,
        user: Json,
        name: str,
        options: list[Json] | None = None,
        *,
        kind: int = 2,
        data: Json | None = None,
        message: Json | None = None,
    ) -> rest.Interaction:
        """A user runs a slash command (or clicks a component): INTERACTION_CREATE."""
        channel = self.world.channels[channel_id]
        guild_id = int(channel["guild_id"])
        member = self.world.members[guild_id].get(int(user["id"])) or self.world.add_member(
            guild_id, user
        )
        if data is None:
            resolver = interaction_data.Resolver(self.world, guild_id, channel_id, self.uploads)
            data = interaction_data.command_data(
                resolver, self._command_id(guild_id, name, 1), name, options
            )
        interaction_id = self.world.snowflakes.next()
        token = self.world.new_token()
        payload: Json = {
            "id": str(interaction_id),
            "application_id": str(self.world.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild_id),
            "channel_id": str(channel_id),
            "channel": dict(channel),
            "member": {
                **member,
                "permissions": self.world.member_permissions(guild_id, int(user["id"]), channel_id),
            },
            "token": token,
            "version": 1,
            "app_permissions": self.world.member_permissions(
                guild_id, self.world.application_id, channel_id
            ),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 26_214_400,
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
        }
        if message is not None:
            payload["message"] = message  # component interactions carry their message
        interaction = rest.Interaction(interaction_id, token, time.monotonic(), payload)
        self.rest.interactions[interaction_id] = interaction
        self.gateway.dispatch("INTERACTION_CREATE", payload, guild_id=guild_id)
        return interaction

    def _command_id(self, guild_id: int, name: str, kind: int) -> int:
        """The registered command's id (guild, then global), or a fresh one."""
        for scope in (guild_id, None):
            for command in self.world.commands.get(scope, {}).values():
                if command["name"] == name and command["type"] == kind:
                    return int(command["id"])
        return self.world.snowflakes.next()

    def run_user_command(
        self, channel_id: int, user: Json, name: str, target: Json
    ) -> rest.Interaction:
        """A user picks the USER command ``name`` in ``target``'s context menu."""
        return self._run_menu(channel_id, user, name, 2, int(target["id"]))

    def run_message_command(self, message: Json, user: Json, name: str) -> rest.Interaction:
        """A user picks the MESSAGE command ``name`` in ``message``'s context menu."""
        return self._run_menu(int(message["channel_id"]), user, name, 3, int(message["id"]))

    def _run_menu(
        self, channel_id: int, user: Json, name: str, kind: int, target_id: int
    ) -> rest.Interaction:
        guild_id = int(self.world.channels[channel_id]["guild_id"])
        resolver = interaction_data.Resolver(self.world, guild_id, channel_id, self.uploads)
        data = interaction_data.menu_data(
            resolver, self._command_id(guild_id, name, kind), name, kind, target_id
        )
        return self.send_interaction(channel_id, user, name, data=data)

    def upload(self, filename: str, content_type: str, size: int) -> Json:
        """A file a user attaches to an ATTACHMENT option: its attachment object (Channel
        Resource > Attachment Object), to name by ``id`` as the option's value."""
        attachment_id = self.world.snowflakes.next()
        url = (
            "https://cdn.discordapp.com/ephemeral-attachments/"
            f"{self.world.application_id}/{attachment_id}/{filename}"
        )
        attachment: Json = {
            "id": str(attachment_id), "filename": filename, "size": size, "url": url,
            "proxy_url": url.replace("cdn.discordapp.com", "media.discordapp.net"),
            "content_type": content_type, "ephemeral": True,
        }  # fmt: skip
        self.uploads[attachment_id] = attachment
        return attachment

    def click(
        self,
        message: Json,
        user: Json,
        custom_id: str,
        *,
        values: list[str] | None = None,
    ) -> rest.Interaction:
        """A user clicks a button (or, with ``values``, picks in a select) of ``message``.
        Only a component the message has can be clicked (Discord sends MESSAGE_COMPONENT
        interactions for the message's own components, with their ``custom_id``)."""
        stored = self.world.messages.get(int(message["channel_id"]), {}).get(int(message["id"]))
        if custom_id not in _custom_ids((stored or message).get("components") or []):
            raise ValueError(f"message {message['id']} has no component {custom_id!r}")
        data: Json = {"custom_id": custom_id, "component_type": 3 if values is not None else 2}
        if values is not None:
            data["values"] = values
        return self.send_interaction(
            int(message["channel_id"]), user, "", kind=3, data=data, message=message
        )

    def submit_modal(
        self, opened: rest.Interaction, user: Json, values: dict[str, str]
    ) -> rest.Interaction:
        """The user fills in and submits the modal the bot opened on ``opened`` (callback type
        9): INTERACTION_CREATE type 5 MODAL_SUBMIT (Receiving and Responding > Interaction
        Object, Modal Submit Data: the modal's ``custom_id``, and its ``components`` with each
        text input's ``value``, by the text input's ``custom_id``)."""
        if opened.response_type != 9 or opened.response is None:
            raise ValueError("the bot has not answered that interaction with a modal")
        modal = opened.response["data"]
        # Every component carries its numeric ``id`` (Component Reference > Anatomy of a
        # Component: Discord numbers those the app left without one, in order).
        numbers = itertools.count(1)
        rows: list[Json] = []
        for row in modal["components"]:
            row_id = row.get("id") or next(numbers)
            inputs = [
                {
                    "type": 4,
                    "id": field.get("id") or next(numbers),
                    "custom_id": field["custom_id"],
                    "value": values.get(field["custom_id"], ""),
                }
                for field in row.get("components", ())
                if field.get("type") == 4
            ]
            rows.append({"type": 1, "id": row_id, "components": inputs})
        return self.send_interaction(
            int(opened.payload["channel_id"]),
            user,
            "",
            kind=5,
            data={"custom_id": modal["custom_id"], "components": rows},
            # Interaction Object ``message``: "for components or modals triggered by
            # components, the message they were attached to".
            message=opened.payload.get("message"),
        )

    def dispatch(self, event: str, data: Json, *, guild_id: int | None = None) -> int:
        """Inject any dispatch into the shard that owns ``guild_id`` (shard 0 if None)."""
        return self.gateway.dispatch(event, data, guild_id=guild_id)

    # --- faults -----------------------------------------------------------------------------

    def force_reconnect(self, shard_id: int) -> None:
        """Send op 7 RECONNECT on the shard's connection."""
        self.gateway.force_reconnect(shard_id)

    def force_invalid_session(self, shard_id: int, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION (``d`` = ``resumable``)."""
        self.gateway.force_invalid_session(shard_id, resumable=resumable)

    def force_close(self, shard_id: int, code: int = protocol.Close.UNKNOWN_ERROR) -> None:
        """Close the shard's connection with a close code."""
        self.gateway.force_close(shard_id, code)

    def shard_of(self, guild_id: int) -> int | None:
        """The shard id that currently receives ``guild_id``'s events, if one is connected."""
        for session in self.gateway.shards.values():
            if sharding.shard_for_guild(guild_id, session.shard_count) == session.shard_id:
                return session.shard_id
        return None

    # --- waiting ----------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: typing.Callable[[], object],
        *,
        timeout: float = 10.0,
        what: str = "condition",
    ) -> None:
        """Poll ``predicate`` until it is truthy; fail with ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.01)

    def connected_shards(self) -> list[int]:
        return sorted(
            shard_id
            for shard_id, session in self.gateway.shards.items()
            if session.connection is not None and not session.connection.closed
        )


def _custom_ids(components: list[Json]) -> set[str]:
    found: set[str] = set()
    for component in components:
        if "custom_id" in component:
            found.add(component["custom_id"])
        found |= _custom_ids(component.get("components") or [])
        accessory = component.get("accessory")
        if accessory:
            found |= _custom_ids([accessory])
    return found
