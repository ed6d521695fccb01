"""What the emulated Discord knows: users, guilds, channels, roles, members, messages.

Objects are kept in Discord's own JSON shapes (API v10), so what the gateway and REST send
is what a real bot would receive.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import secrets
import time
import typing

from shared import sharding
from shared.cache import permissions as permissions_module

#: Discord's epoch (2015-01-01T00:00:00Z) in milliseconds.
DISCORD_EPOCH_MS: typing.Final[int] = 1_420_070_400_000
#: Every permission, as Discord's "ADMINISTRATOR"-free default @everyone set.
DEFAULT_EVERYONE_PERMISSIONS: typing.Final[str] = "1071698660929"

Json = dict[str, typing.Any]


#: Announcement, public and private threads (Channel > Channel Types 10, 11, 12).
THREAD_TYPES: typing.Final = frozenset({10, 11, 12})


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class SnowflakeFactory:
    """Discord snowflakes: milliseconds since the Discord epoch, worker, process, increment."""

    __slots__ = ("_counter",)

    def __init__(self) -> None:
        self._counter = itertools.count()

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (1 << 17) | (next(self._counter) & 0xFFF)

    def for_shard(self, shard_id: int, shard_count: int) -> int:
        """A fresh snowflake that Discord would route to ``shard_id``.

        Moves the timestamp part forward by less than ``shard_count`` milliseconds.
        """
        candidate = self.next()
        offset = (shard_id - sharding.shard_for_guild(candidate, shard_count)) % shard_count
        return candidate + (offset << 22)


def make_bot_token(user_id: int) -> str:
    """A token shaped like Discord's: base64 user id, timestamp part, HMAC part."""
    head = base64.b64encode(str(user_id).encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(5)[:6]}.{secrets.token_urlsafe(28)[:38]}"


def user_id_of_token(token: str) -> int | None:
    """The bot user id a token starts with, as libraries (hikari) read it."""
    head = token.split(".", 1)[0]
    try:
        return int(base64.b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return None


class World:
    """The emulated Discord's data."""

    def __init__(self, *, bot_name: str = "Shardline", application_id: int | None = None) -> None:
        self.snowflakes = SnowflakeFactory()
        self.application_id = application_id or self.snowflakes.next()
        self.bot_user: Json = self._user_payload(self.application_id, bot_name, bot=True)
        self.users: dict[int, Json] = {self.application_id: self.bot_user}
        self.guilds: dict[int, Json] = {}
        self.channels: dict[int, Json] = {}
        self.members: dict[int, dict[int, Json]] = {}
        self.messages: dict[int, dict[int, Json]] = {}
        self.commands: dict[int | None, dict[int, Json]] = {}
        #: Told ``(kind, message)`` when a message is created, updated or deleted (the web page).
        self.message_listeners: list[typing.Callable[[str, Json], None]] = []
        #: guild -> user -> voice state (Discord's shape, with guild_id)
        self.voice_states: dict[int, dict[int, Json]] = {}
        """Application commands by guild id (``None`` for global)."""

    @staticmethod
    def _user_payload(user_id: int, name: str, *, bot: bool = False) -> Json:
        return {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": None if bot else name,
            "avatar": None,
            "bot": bot,
            "system": False,
            "mfa_enabled": False,
            "banner": None,
            "accent_color": None,
            "locale": "en-US",
            "verified": True,
            "flags": 0,
            "premium_type": 0,
            "public_flags": 0,
            "avatar_decoration_data": None,
        }

    @property
    def bot_id(self) -> int:
        return self.application_id

    def add_user(self, name: str, *, bot: bool = False) -> Json:
        user = self._user_payload(self.snowflakes.next(), name, bot=bot)
        self.users[int(user["id"])] = user
        return user

    def add_guild(
        self,
        name: str = "guild",
        *,
        guild_id: int | None = None,
        owner_id: int | None = None,
        channels: int = 1,
    ) -> Json:
        gid = guild_id if guild_id is not None else self.snowflakes.next()
        owner = owner_id if owner_id is not None else self.add_user(f"{name}-owner")["id"]
        everyone = {
            "id": str(gid),
            "name": "@everyone",
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": 0,
            "permissions": DEFAULT_EVERYONE_PERMISSIONS,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        guild: Json = {
            "id": str(gid),
            "name": name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(owner),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [everyone],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "max_video_channel_users": 25,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
        }
        self.guilds[gid] = guild
        self.members[gid] = {}
        for index in range(channels):
            self.add_channel(gid, f"channel-{index}")
        self.add_member(gid, self.bot_user)
        owner_user = self.users.get(int(owner))
        if owner_user is not None:
            self.add_member(gid, owner_user)
        return guild

    def add_channel(self, guild_id: int, name: str, *, kind: int = 0) -> Json:
        cid = self.snowflakes.next()
        channel: Json = {
            "id": str(cid),
            "type": kind,
            "guild_id": str(guild_id),
            "name": name,
            "position": len(self.guild_channels(guild_id)),
            "permission_overwrites": [],
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        if kind == 2:
            channel.update({"bitrate": 64000, "user_limit": 0, "rtc_region": None})
        self.channels[cid] = channel
        self.messages[cid] = {}
        return channel

    def add_thread(self, parent_id: int, owner: Json, name: str, *, private: bool = False) -> Json:
        """A thread in ``parent_id`` (Channel > Channel Object, thread example; Thread Metadata
        Object): type 11 public or 12 private, ``parent_id``, ``owner_id``, ``thread_metadata``,
        and no ``permission_overwrites``: a thread takes its parent's (Permissions >
        Permission Overwrites)."""
        parent = self.channels[parent_id]
        cid = self.snowflakes.next()
        now = iso_now()
        metadata: Json = {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": now,
            "locked": False,
            "create_timestamp": now,
        }
        if private:
            metadata["invitable"] = True  # Thread Metadata: private threads only
        thread: Json = {
            "id": str(cid),
            "type": 12 if private else 11,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": owner["id"],
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "thread_metadata": metadata,
            "flags": 0,
        }
        self.channels[cid] = thread
        self.messages[cid] = {}
        return thread

    def open_dm(self, user: Json) -> Json:
        """The DM channel between ``user`` and the bot (Channel > Channel Object, type 1 DM:
        no ``guild_id``, ``recipients`` the other user), made once, as POST /users/@me/channels."""
        for existing in self.channels.values():
            if existing["type"] == 1 and existing["recipients"][0]["id"] == user["id"]:
                return existing
        cid = self.snowflakes.next()
        channel: Json = {
            "id": str(cid),
            "type": 1,
            "last_message_id": None,
            "recipients": [user],
            "flags": 0,
        }
        self.channels[cid] = channel
        self.messages[cid] = {}
        return channel

    def add_member(self, guild_id: int, user: Json, *, roles: typing.Sequence[int] = ()) -> Json:
        member: Json = {
            "user": user,
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in roles],
            "joined_at": iso_now(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        self.members[guild_id][int(user["id"])] = member
        return member

    def member_permissions(self, guild_id: int, user_id: int, channel_id: int | None) -> str:
        """A member's computed permissions in a channel, as interactions carry them.

        discord-api-docs, Interactions "Interaction Object" (``member.permissions``: total
        permissions of the member in the channel, including overwrites; ``app_permissions``
        the same for the app) and Topics "Permissions" (Permission Overwrites).
        """
        guild = self.guilds[guild_id]
        member = self.members[guild_id].get(user_id) or {"roles": []}
        role_ids = [int(r) for r in member.get("roles", ())]
        roles = {int(r["id"]): int(r["permissions"]) for r in guild.get("roles", ())}
        base = permissions_module.base_permissions(
            guild_id=guild_id,
            owner_id=int(guild["owner_id"]),
            user_id=user_id,
            member_role_ids=role_ids,
            role_permissions=roles,
        )
        channel = self.channels.get(channel_id) if channel_id is not None else None
        if channel is None:
            return str(base)
        overwrites = {
            int(o["id"]): permissions_module.Overwrite(
                int(o["id"]), int(o["allow"]), int(o["deny"])
            )
            for o in channel.get("permission_overwrites") or ()
        }
        return str(
            permissions_module.channel_permissions(
                base,
                guild_id=guild_id,
                user_id=user_id,
                member_role_ids=role_ids,
                overwrites=overwrites,
            )
        )

    def guild_channels(self, guild_id: int) -> list[Json]:
        return [c for c in self.channels.values() if c.get("guild_id") == str(guild_id)]

    def guilds_of_shard(self, shard_id: int, shard_count: int) -> list[int]:
        return [
            gid for gid in self.guilds if sharding.shard_for_guild(gid, shard_count) == shard_id
        ]

    def set_voice_state(
        self, guild_id: int, user_id: int, channel_id: int | None, session_id: str, **flags: bool
    ) -> Json:
        """Record where a user is in voice (``channel_id`` None: left), as Discord shows it."""
        state: Json = {
            "guild_id": str(guild_id),
            "channel_id": None if channel_id is None else str(channel_id),
            "user_id": str(user_id),
            "member": self.members.get(guild_id, {}).get(user_id),
            "session_id": session_id,
            "deaf": False,
            "mute": False,
            "self_deaf": bool(flags.get("self_deaf")),
            "self_mute": bool(flags.get("self_mute")),
            "self_video": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
        }
        states = self.voice_states.setdefault(guild_id, {})
        if channel_id is None:
            states.pop(user_id, None)
        else:
            states[user_id] = state
        return state

    def guild_create_payload(
        self, guild_id: int, *, presences: bool = False, large_threshold: int = 50
    ) -> Json:
        """The GUILD_CREATE a bot receives for a guild it is in.

        discord-api-docs, Gateway Events "Guild Create": without the privileged
        GUILD_PRESENCES intent (``presences`` False, the default a bot runs with), and in any
        guild over 75k members, ``members`` holds only the bot itself and the users in voice
        channels, and ``presences`` is empty. With it, Gateway "Identify Structure"
        ``large_threshold`` (50..250): a guild with more members than that is ``large`` and
        offline members are left out (the emulator has no presences: every member but the bot
        and voice users counts as offline, so only those below the threshold are sent).
        """
        guild = dict(self.guilds[guild_id])
        everyone = list(self.members[guild_id].values())
        threshold = max(50, min(250, large_threshold))
        large = len(everyone) > threshold
        in_voice = set(self.voice_states.get(guild_id, {}))
        if presences and len(everyone) <= 75_000 and not large:
            members = everyone
        else:
            members = [
                m
                for m in everyone
                if int(m["user"]["id"]) == self.application_id or int(m["user"]["id"]) in in_voice
            ]
        guild.update(
            {
                "joined_at": iso_now(),
                "large": large,
                "unavailable": False,
                "member_count": len(everyone),
                "voice_states": [
                    {k: v for k, v in state.items() if k != "guild_id"}
                    for state in self.voice_states.get(guild_id, {}).values()
                ],
                "members": members,
                "channels": [
                    {k: v for k, v in c.items() if k != "guild_id"}
                    for c in self.guild_channels(guild_id)
                    if c["type"] not in THREAD_TYPES
                ],
                # Guild Create: "threads" holds the active threads the bot can see.
                "threads": [
                    c
                    for c in self.guild_channels(guild_id)
                    if c["type"] in THREAD_TYPES and not c["thread_metadata"]["archived"]
                ],
                "presences": [
                    {"user": {"id": m["user"]["id"]}, "status": "online", "activities": []}
                    for m in members
                    if presences and m["user"].get("bot")
                ],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
        return guild

    def make_message(
        self, channel_id: int, author: Json, content: str, *, member: Json | None = None
    ) -> Json:
        channel = self.channels[channel_id]
        mid = self.snowflakes.next()
        message: Json = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        guild_id = channel.get("guild_id")
        if guild_id is not None:
            message["guild_id"] = guild_id
            if member is not None:
                message["member"] = {k: v for k, v in member.items() if k != "user"}
        self.messages[channel_id][mid] = message
        channel["last_message_id"] = str(mid)
        return message

    def message_changed(self, kind: str, message: Json) -> None:
        """``kind`` is ``create``, ``update`` or ``delete``."""
        for listener in self.message_listeners:
            listener(kind, message)

    def new_token(self) -> str:
        """An interaction token: long, opaque, URL-safe."""
        return "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(96)
