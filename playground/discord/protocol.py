"""Discord's gateway protocol numbers, as documented (API v10)."""

from __future__ import annotations

import enum
import typing

API_VERSION: typing.Final[int] = 10


class Op(enum.IntEnum):
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


#: Opcodes a client may send.
CLIENT_OPS: typing.Final[frozenset[int]] = frozenset(
    {
        Op.HEARTBEAT,
        Op.IDENTIFY,
        Op.PRESENCE_UPDATE,
        Op.VOICE_STATE_UPDATE,
        Op.RESUME,
        Op.REQUEST_GUILD_MEMBERS,
    }
)


class Close(enum.IntEnum):
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


CLOSE_REASONS: typing.Final[dict[int, str]] = {
    Close.UNKNOWN_ERROR: "Unknown error.",
    Close.UNKNOWN_OPCODE: "Unknown opcode.",
    Close.DECODE_ERROR: "Decode error.",
    Close.NOT_AUTHENTICATED: "Not authenticated.",
    Close.AUTHENTICATION_FAILED: "Authentication failed.",
    Close.ALREADY_AUTHENTICATED: "Already authenticated.",
    Close.INVALID_SEQ: "Invalid seq.",
    Close.RATE_LIMITED: "Rate limited.",
    Close.SESSION_TIMED_OUT: "Session timed out.",
    Close.INVALID_SHARD: "Invalid shard.",
    Close.SHARDING_REQUIRED: "Sharding required.",
    Close.INVALID_API_VERSION: "Invalid API version.",
    Close.INVALID_INTENTS: "Invalid intent(s).",
    Close.DISALLOWED_INTENTS: "Disallowed intent(s).",
}


class Intent(enum.IntFlag):
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15
    GUILD_SCHEDULED_EVENTS = 1 << 16
    AUTO_MODERATION_CONFIGURATION = 1 << 20
    AUTO_MODERATION_EXECUTION = 1 << 21
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGE_POLLS = 1 << 25


ALL_INTENTS: typing.Final[int] = sum(int(i) for i in Intent)
PRIVILEGED_INTENTS: typing.Final[int] = int(
    Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES | Intent.MESSAGE_CONTENT
)

_GUILDS = Intent.GUILDS
#: Intent a dispatch needs in a guild, and in a DM where that differs; events not listed here
#: (READY, RESUMED, INTERACTION_CREATE, VOICE_SERVER_UPDATE, GUILD_MEMBERS_CHUNK ...) need none.
EVENT_INTENTS: typing.Final[dict[str, tuple[Intent, Intent | None]]] = {
    **dict.fromkeys(
        (
            "GUILD_CREATE",
            "GUILD_UPDATE",
            "GUILD_DELETE",
            "GUILD_ROLE_CREATE",
            "GUILD_ROLE_UPDATE",
            "GUILD_ROLE_DELETE",
            "CHANNEL_CREATE",
            "CHANNEL_UPDATE",
            "CHANNEL_DELETE",
            "CHANNEL_PINS_UPDATE",
            "THREAD_CREATE",
            "THREAD_UPDATE",
            "THREAD_DELETE",
            "THREAD_LIST_SYNC",
            "THREAD_MEMBER_UPDATE",
            "STAGE_INSTANCE_CREATE",
            "STAGE_INSTANCE_UPDATE",
            "STAGE_INSTANCE_DELETE",
        ),
        (_GUILDS, None),
    ),
    "GUILD_MEMBER_ADD": (Intent.GUILD_MEMBERS, None),
    "GUILD_MEMBER_UPDATE": (Intent.GUILD_MEMBERS, None),
    "GUILD_MEMBER_REMOVE": (Intent.GUILD_MEMBERS, None),
    "THREAD_MEMBERS_UPDATE": (Intent.GUILD_MEMBERS, None),
    "GUILD_BAN_ADD": (Intent.GUILD_MODERATION, None),
    "GUILD_BAN_REMOVE": (Intent.GUILD_MODERATION, None),
    "GUILD_AUDIT_LOG_ENTRY_CREATE": (Intent.GUILD_MODERATION, None),
    "GUILD_EMOJIS_UPDATE": (Intent.GUILD_EXPRESSIONS, None),
    "GUILD_STICKERS_UPDATE": (Intent.GUILD_EXPRESSIONS, None),
    "VOICE_STATE_UPDATE": (Intent.GUILD_VOICE_STATES, None),
    "PRESENCE_UPDATE": (Intent.GUILD_PRESENCES, None),
    "MESSAGE_CREATE": (Intent.GUILD_MESSAGES, Intent.DIRECT_MESSAGES),
    "MESSAGE_UPDATE": (Intent.GUILD_MESSAGES, Intent.DIRECT_MESSAGES),
    "MESSAGE_DELETE": (Intent.GUILD_MESSAGES, Intent.DIRECT_MESSAGES),
    "MESSAGE_DELETE_BULK": (Intent.GUILD_MESSAGES, None),
    "MESSAGE_REACTION_ADD": (Intent.GUILD_MESSAGE_REACTIONS, Intent.DIRECT_MESSAGE_REACTIONS),
    "MESSAGE_REACTION_REMOVE": (Intent.GUILD_MESSAGE_REACTIONS, Intent.DIRECT_MESSAGE_REACTIONS),
    "TYPING_START": (Intent.GUILD_MESSAGE_TYPING, Intent.DIRECT_MESSAGE_TYPING),
}

#: Events whose payload loses content, embeds, attachments and components without
#: MESSAGE_CONTENT (unless the bot is mentioned, or it is a DM).
CONTENT_EVENTS: typing.Final[frozenset[str]] = frozenset({"MESSAGE_CREATE", "MESSAGE_UPDATE"})


def required_intent(event: str, *, in_guild: bool) -> Intent | None:
    """The intent a session needs to receive ``event``; ``None`` when it needs none."""
    pair = EVENT_INTENTS.get(event)
    if pair is None:
        return None
    guild_intent, dm_intent = pair
    return guild_intent if in_guild or dm_intent is None else dm_intent
