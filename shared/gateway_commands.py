"""Gateway commands: what workers ask a gateway to send on one of its shards.

Wire form (JSON): ``{"v":1,"op":4,"shard":3,"d":{...}}`` published to the commands exchange with
routing key ``{pool}.shard.{id}`` (whichever gateway holds the shard now) or a gateway id. When
the AMQP message carries ``reply_to``, the gateway answers ``{"ok":true}`` or
``{"ok":false,"reason":"invalid","error":"..."}`` (a :class:`CommandRefusal`) with the same
``correlation_id``. Every command ends acked: sent, or refused with a reason; a refused command
nobody waits for goes to the dead-letter queue.

Validation follows Discord's documented payloads for op 3 (presence update), op 4 (voice state
update) and op 8 (request guild members), and is strict enough that a command that passes it
is one the gateway's shard (hikari) accepts: ASCII snowflakes in range, ``limit`` 0 to 100,
``since`` a representable time, and (in the gateway, which knows them) the intents a members
request needs.
"""

from __future__ import annotations

import dataclasses
import enum
import typing

import orjson

__all__: typing.Sequence[str] = (
    "MAX_COMMAND_BYTES",
    "OP_PRESENCE_UPDATE",
    "OP_REQUEST_GUILD_MEMBERS",
    "OP_VOICE_STATE_UPDATE",
    "CommandError",
    "CommandRefusal",
    "GatewayCommand",
    "GatewayCommandError",
    "RefusalReason",
    "decode",
    "decode_reply",
    "encode",
    "encode_reply",
    "validate",
)

OP_PRESENCE_UPDATE: typing.Final[int] = 3
OP_VOICE_STATE_UPDATE: typing.Final[int] = 4
OP_REQUEST_GUILD_MEMBERS: typing.Final[int] = 8
_STATUSES: typing.Final = frozenset({"online", "dnd", "idle", "invisible", "offline"})
_MAX_NONCE_BYTES: typing.Final = 32
#: Discord closes a connection whose sent payload exceeds 4096 bytes (discord-api-docs, Gateway
#: "Sending Events"); our wire form is no smaller than what the shard sends, so a command
#: message over this is refused unread.
MAX_COMMAND_BYTES: typing.Final[int] = 4096
_MAX_SNOWFLAKE: typing.Final = (1 << 64) - 1
#: The largest ``since`` the gateway can turn into a time (the end of year 9999, in ms).
_MAX_SINCE_MS: typing.Final = 253_402_300_799_999
#: Activity types Discord documents (Activity Object > Activity Types).
_ACTIVITY_TYPES: typing.Final = frozenset(range(6))
#: Intent bits (Gateway > Gateway Intents): members requests need them (Request Guild Members).
INTENT_GUILD_MEMBERS: typing.Final[int] = 1 << 1
INTENT_GUILD_PRESENCES: typing.Final[int] = 1 << 8


class RefusalReason(enum.StrEnum):
    """Why a gateway did not send a command (the ``reason`` of a refusal reply)."""

    INVALID = "invalid"
    """The command is malformed or asks for what the shard cannot do (an intent it lacks)."""
    TOO_LARGE = "too_large"
    """The message is over :data:`MAX_COMMAND_BYTES`; refused unread."""
    NOT_HELD = "not_held"
    """The gateway does not hold the shard (any more); sending again may reach its holder."""
    NOT_SENT = "not_sent"
    """The shard could not send it (disconnected, or reconnected while it waited for its turn
    in Discord's rate limit); sending again later may work."""
    NO_ANSWER = "no_answer"
    """No gateway answered in time (set by the caller, never by a gateway)."""
    NO_ROUTE = "no_route"
    """No gateway's queue took the command, so it was not sent: no gateway holds the shard, or
    the one addressed is gone or reconnecting after a broker node loss (set by the caller)."""
    CONNECTION_LOST = "connection_lost"
    """The caller's broker connection dropped while it waited for the answer (a node lost);
    the command may or may not have been sent (set by the caller)."""
    FAILED = "failed"
    """Anything else went wrong in the gateway; its log has the details."""


class CommandError(ValueError):
    """A command is malformed; the message says what is wrong."""


@dataclasses.dataclass(frozen=True, slots=True)
class CommandRefusal:
    """A gateway's answer to a command it did not send: the one error record both sides read."""

    reason: RefusalReason
    message: str

    def __str__(self) -> str:
        return self.message


class GatewayCommandError(Exception):
    """Raised to a worker that waited for a command the gateway refused; ``refusal`` says why."""

    def __init__(self, refusal: CommandRefusal) -> None:
        super().__init__(f"{refusal.reason}: {refusal.message}")
        self.refusal = refusal

    @property
    def reason(self) -> RefusalReason:
        return self.refusal.reason


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayCommand:
    op: int
    shard_id: int
    d: dict[str, typing.Any]


def encode(command: GatewayCommand) -> bytes:
    return orjson.dumps({"v": 1, "op": command.op, "shard": command.shard_id, "d": command.d})


def encode_reply(refusal: CommandRefusal | None = None) -> bytes:
    if refusal is None:
        return orjson.dumps({"ok": True})
    return orjson.dumps({"ok": False, "reason": refusal.reason.value, "error": refusal.message})


def decode_reply(body: bytes) -> CommandRefusal | None:
    """``None`` when the command was sent; the refusal otherwise (unreadable: ``FAILED``)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raw = None
    if not isinstance(raw, dict) or not isinstance(raw.get("ok"), bool):
        return CommandRefusal(RefusalReason.FAILED, "the gateway's answer was unreadable")
    if raw["ok"]:
        return None
    try:
        reason = RefusalReason(str(raw.get("reason")))
    except ValueError:
        reason = RefusalReason.FAILED  # an older or newer gateway: still a refusal
    return CommandRefusal(reason, str(raw.get("error", "refused")))


def _snowflake(d: dict[str, typing.Any], name: str, *, nullable: bool = False) -> None:
    value = d.get(name)
    if value is None and nullable and name in d:
        return
    # ASCII digits only: str.isdigit() also takes "١٢٣" and "²", which Discord refuses.
    text = str(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, str))
        or not (text.isascii() and text.isdigit())
        or int(text) > _MAX_SNOWFLAKE
    ):
        raise CommandError(f"'{name}' must be a snowflake")


def _validate_voice(d: dict[str, typing.Any]) -> None:
    _snowflake(d, "guild_id")
    _snowflake(d, "channel_id", nullable=True)
    for flag in ("self_mute", "self_deaf"):
        if not isinstance(d.get(flag), bool):
            raise CommandError(f"'{flag}' must be true or false")


def _validate_presence(d: dict[str, typing.Any]) -> None:
    if d.get("status") not in _STATUSES:
        raise CommandError(f"'status' must be one of {', '.join(sorted(_STATUSES))}")
    if not isinstance(d.get("afk"), bool):
        raise CommandError("'afk' must be true or false")
    since = d.get("since")
    if since is not None and (
        isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= _MAX_SINCE_MS
    ):
        raise CommandError(
            "'since' must be a unix time in milliseconds (year 1970 to 9999) or null"
        )
    activities = d.get("activities")
    if not isinstance(activities, list) or not all(_activity_ok(a) for a in activities):
        raise CommandError(
            "'activities' must be a list of {name, type (0 to 5), url, state} objects"
        )


def _activity_ok(activity: object) -> bool:
    return (
        isinstance(activity, dict)
        and isinstance(activity.get("name"), str)
        and type(activity.get("type")) is int
        and activity["type"] in _ACTIVITY_TYPES
        and all(isinstance(activity.get(k), (str, type(None))) for k in ("url", "state"))
    )


def _validate_members(d: dict[str, typing.Any]) -> None:
    _snowflake(d, "guild_id")
    has_query = "query" in d
    has_users = "user_ids" in d
    if has_query == has_users:
        raise CommandError("give exactly one of 'query' and 'user_ids'")
    if has_query:
        if not isinstance(d["query"], str):
            raise CommandError("'query' must be a string")
        limit = d.get("limit")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 100:
            raise CommandError("'limit' must be an integer from 0 to 100")
    else:
        if d.get("limit"):
            raise CommandError("'limit' goes with 'query', not with 'user_ids'")
        users = d["user_ids"] if isinstance(d["user_ids"], list) else [d["user_ids"]]
        if not users or len(users) > 100:
            raise CommandError("'user_ids' must hold 1 to 100 snowflakes")
        for user in users:
            _snowflake({"user_id": user}, "user_id")
    nonce = d.get("nonce")
    if nonce is not None and (not isinstance(nonce, str) or len(nonce.encode()) > _MAX_NONCE_BYTES):
        raise CommandError("'nonce' must be a string of at most 32 bytes")
    if "presences" in d and not isinstance(d["presences"], bool):
        raise CommandError("'presences' must be true or false")


_VALIDATORS: typing.Final[dict[int, typing.Callable[[dict[str, typing.Any]], None]]] = {
    OP_PRESENCE_UPDATE: _validate_presence,
    OP_VOICE_STATE_UPDATE: _validate_voice,
    OP_REQUEST_GUILD_MEMBERS: _validate_members,
}


def _check_intents(d: dict[str, typing.Any], intents: int) -> None:
    """What Discord (and hikari, before sending) require of a members request."""
    if d.get("presences") is True and not intents & INTENT_GUILD_PRESENCES:
        raise CommandError("'presences' needs the GUILD_PRESENCES intent, which this shard lacks")
    if (
        "query" in d
        and not d["query"]
        and not d.get("limit")
        and not intents & (INTENT_GUILD_MEMBERS)
    ):
        raise CommandError("listing every member needs the GUILD_MEMBERS intent")


def validate(command: GatewayCommand, *, intents: int | None = None) -> None:
    """Raise :class:`CommandError` unless the command is well formed (and, given the shard's
    ``intents``, one the shard may send)."""
    validator = _VALIDATORS.get(command.op)
    if validator is None:
        raise CommandError(f"op {command.op} is not a gateway command (3, 4 or 8)")
    validator(command.d)
    if intents is not None and command.op == OP_REQUEST_GUILD_MEMBERS:
        _check_intents(command.d, intents)


def decode(body: bytes, *, intents: int | None = None) -> GatewayCommand:
    """Parse and validate a command; raise :class:`CommandError` with the reason."""
    if len(body) > MAX_COMMAND_BYTES:
        raise CommandError(f"a command of {len(body)} bytes (limit {MAX_COMMAND_BYTES})")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("v") != 1:
        raise CommandError("expected a version 1 command object")
    op, shard, d = raw.get("op"), raw.get("shard"), raw.get("d")
    if type(op) is not int or type(shard) is not int or shard < 0 or not isinstance(d, dict):
        raise CommandError("expected 'op' and 'shard' integers and a 'd' object")
    command = GatewayCommand(op, shard, d)
    validate(command, intents=intents)
    return command
