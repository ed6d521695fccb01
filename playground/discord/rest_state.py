"""What the REST routes share: the world they answer from, the interactions Discord created,
the lookups that answer Discord's 404s, and how a message is posted and edited."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import typing

from playground.discord import gateway, records, world

Json = dict[str, typing.Any]

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


def message_body(body: typing.Any) -> Json:
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


class RestState:
    """The emulator's state as the REST routes see it."""

    def __init__(
        self,
        world_: world.World,
        records_: records.Records,
        gateway_: gateway.GatewayServer,
    ) -> None:
        self.world = world_
        self.records = records_
        self.gateway = gateway_
        self.interactions: dict[int, Interaction] = {}

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

    def post_message(
        self, channel_id: int, author: Json, body: Json, *, attachments: list[Json] | None = None
    ) -> Json:
        """``attachments``: the files a user's message carries (Attachment Object)."""
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
        if attachments:
            message["attachments"] = list(attachments)
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
        message.update({k: v for k, v in message_body(body).items() if k in fields})
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
