"""Gateway commands: what workers ask a gateway to send on one of its shards.

Wire form (JSON): ``{"v":1,"op":4,"shard":3,"d":{...}}`` published to the commands exchange with
routing key ``{pool}.shard.{id}`` (whichever gateway holds the shard now) or a gateway id. When
the AMQP message carries ``reply_to``, the gateway answers ``{"ok":true}`` or
``{"ok":false,"error":"..."}`` with the same ``correlation_id``.

Validation follows Discord's documented payloads for op 3 (presence update), op 4 (voice state
update) and op 8 (request guild members).
"""

from __future__ import annotations

import dataclasses
import typing

import orjson

__all__: typing.Sequence[str] = (
    "OP_PRESENCE_UPDATE",
    "OP_REQUEST_GUILD_MEMBERS",
    "OP_VOICE_STATE_UPDATE",
    "CommandError",
    "GatewayCommand",
    "decode",
    "encode",
    "encode_reply",
)

OP_PRESENCE_UPDATE: typing.Final[int] = 3
OP_VOICE_STATE_UPDATE: typing.Final[int] = 4
OP_REQUEST_GUILD_MEMBERS: typing.Final[int] = 8
_STATUSES: typing.Final = frozenset({"online", "dnd", "idle", "invisible", "offline"})
_MAX_NONCE_BYTES: typing.Final = 32


class CommandError(ValueError):
    """A command is malformed; the message says what is wrong."""


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayCommand:
    op: int
    shard_id: int
    d: dict[str, typing.Any]


def encode(command: GatewayCommand) -> bytes:
    return orjson.dumps({"v": 1, "op": command.op, "shard": command.shard_id, "d": command.d})


def encode_reply(*, ok: bool, error: str | None = None) -> bytes:
    return orjson.dumps({"ok": ok} if error is None else {"ok": ok, "error": error})


def _snowflake(d: dict[str, typing.Any], name: str, *, nullable: bool = False) -> None:
    value = d.get(name)
    if value is None and nullable and name in d:
        return
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
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
    if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
        raise CommandError("'since' must be a unix time in milliseconds or null")
    activities = d.get("activities")
    if not isinstance(activities, list) or not all(
        isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("type"), int)
        for a in activities
    ):
        raise CommandError("'activities' must be a list of {name, type} objects")


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
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise CommandError("'limit' must be a non-negative integer")
    else:
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


def validate(command: GatewayCommand) -> None:
    validator = _VALIDATORS.get(command.op)
    if validator is None:
        raise CommandError(f"op {command.op} is not a gateway command (3, 4 or 8)")
    validator(command.d)


def decode(body: bytes) -> GatewayCommand:
    """Parse and validate a command; raise :class:`CommandError` with the reason."""
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
    validate(command)
    return command
