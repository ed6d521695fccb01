"""The v1 event envelope: one Discord dispatch, tagged with where it came from.

Wire form (JSON, orjson)::

    {"v":1,"pool":"main","gateway":"gw-1a2b","reply_to":"shardline.gateway.main.gw-1a2b",
     "shard":[0,16],"session":"...","seq":42,"t":"MESSAGE_CREATE","d":{...},"ts":1732240000.123}

``d`` is Discord's payload untouched. One AMQP message body carries one envelope (a JSON
object) or a batch of envelopes of one shard and one routing key (a JSON array).
"""

from __future__ import annotations

import typing

import orjson

__all__: typing.Sequence[str] = (
    "CONTENT_TYPE",
    "MAX_MESSAGE_BYTES",
    "VERSION",
    "EnvelopeError",
    "EventEnvelope",
    "MalformedEnvelopeError",
    "UnsupportedVersionError",
    "decode",
    "decode_message",
    "decode_parts",
    "encode",
    "encode_batch",
)

VERSION: typing.Final[int] = 1
CONTENT_TYPE: typing.Final[str] = "application/json"
#: Larger bodies are refused unread: Discord's largest dispatches (a GUILD_CREATE of a big
#: guild, a member chunk) stay well under this, so anything above it is not ours.
MAX_MESSAGE_BYTES: typing.Final[int] = 64 * 1024 * 1024


class EnvelopeError(ValueError):
    """A message is not a valid envelope; ``reason`` is what goes on the dead-letter queue."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedEnvelopeError(EnvelopeError):
    """The body is not JSON, or a field is missing or of the wrong type."""


class UnsupportedVersionError(EnvelopeError):
    """The envelope carries a ``v`` this code does not understand."""


class EventEnvelope(typing.NamedTuple):
    """One dispatch from one shard of one gateway.

    Immutable; a named tuple rather than a frozen dataclass because workers build one per
    event and a frozen dataclass's ``__init__`` costs three times as much (measured).
    """

    pool: str
    gateway: str
    reply_to: str
    shard_id: int
    shard_count: int
    session: str
    seq: int
    t: str
    d: typing.Any
    ts: float

    @property
    def dedupe_scope(self) -> str:
        """``pool:shard:session``: the stream ``seq`` counts in."""
        return f"{self.pool}:{self.shard_id}:{self.session}"

    @property
    def dedupe_key(self) -> str:
        """``pool:shard:session:seq``: the same dispatch replayed by a RESUME has the same key."""
        return f"{self.pool}:{self.shard_id}:{self.session}:{self.seq}"

    def to_dict(self) -> dict[str, typing.Any]:
        return wire(
            self.pool, self.gateway, self.reply_to, self.shard_id, self.shard_count,
            self.session, self.seq, self.t, self.d, self.ts,
        )  # fmt: skip


def wire(  # noqa: PLR0913, PLR0917 - the envelope's ten fields, positional on the hot path
    pool: str,
    gateway: str,
    reply_to: str,
    shard_id: int,
    shard_count: int,
    session: str,
    seq: int,
    t: str,
    d: typing.Any,
    ts: float,
) -> dict[str, typing.Any]:
    """The envelope's wire form, the one place its fields are named; the gateway's publisher
    builds every envelope with it (one call per dispatch, no object in between)."""
    return {
        "v": VERSION,
        "pool": pool,
        "gateway": gateway,
        "reply_to": reply_to,
        "shard": [shard_id, shard_count],
        "session": session,
        "seq": seq,
        "t": t,
        "d": d,
        "ts": ts,
    }


def encode(envelope: EventEnvelope) -> bytes:
    """Serialise one envelope as one message body."""
    return orjson.dumps(envelope.to_dict())


def encode_batch(envelopes: typing.Sequence[EventEnvelope]) -> bytes:
    """Serialise envelopes of one shard and one routing key as one message body."""
    if not envelopes:
        raise ValueError("a batch holds at least one envelope")
    if len(envelopes) == 1:
        return encode(envelopes[0])
    return orjson.dumps([envelope.to_dict() for envelope in envelopes])


_STR_FIELDS: typing.Final = ("pool", "gateway", "reply_to", "session", "t")


def _from_mapping(raw: object) -> EventEnvelope:
    if not isinstance(raw, dict):
        raise MalformedEnvelopeError(f"expected a JSON object, got {type(raw).__name__}")
    version = raw.get("v")
    if version != VERSION:
        raise UnsupportedVersionError(f"unsupported envelope version {version!r}")
    for name in _STR_FIELDS:
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedEnvelopeError(f"field {name!r} must be a non-empty string")
    shard = raw.get("shard")
    if (
        not isinstance(shard, list)
        or len(shard) != 2
        or not all(type(x) is int for x in shard)
        or not 0 <= shard[0] < shard[1]
    ):
        raise MalformedEnvelopeError("field 'shard' must be [shard_id, shard_count]")
    seq = raw.get("seq")
    if type(seq) is not int or seq < 0:
        raise MalformedEnvelopeError("field 'seq' must be a non-negative integer")
    ts = raw.get("ts")
    if type(ts) not in (int, float):
        raise MalformedEnvelopeError("field 'ts' must be a number")
    if "d" not in raw:
        raise MalformedEnvelopeError("field 'd' is missing")
    return EventEnvelope(
        pool=raw["pool"],
        gateway=raw["gateway"],
        reply_to=raw["reply_to"],
        shard_id=shard[0],
        shard_count=shard[1],
        session=raw["session"],
        seq=seq,
        t=raw["t"],
        d=raw["d"],
        ts=float(typing.cast("float", ts)),
    )


def _loads(body: bytes) -> object:
    if len(body) > MAX_MESSAGE_BYTES:
        raise MalformedEnvelopeError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedEnvelopeError(f"body is not valid JSON: {exc}") from None


def decode(body: bytes) -> EventEnvelope:
    """Parse and validate one envelope."""
    return _from_mapping(_loads(body))


def decode_message(body: bytes) -> list[EventEnvelope]:
    """Parse a message body holding one envelope or a batch; all or nothing."""
    raw = _loads(body)
    if isinstance(raw, list):
        if not raw:
            raise MalformedEnvelopeError("empty batch")
        return [_from_mapping(item) for item in raw]
    return [_from_mapping(raw)]


def decode_parts(body: bytes) -> tuple[list[EventEnvelope], list[tuple[object, str]]]:
    """Parse a message body, keeping what is good: the valid envelopes, and each bad item of a
    batch with why it is bad (to be parked alone, so one bad envelope never takes its batch
    with it). Raises :class:`EnvelopeError` only when the body itself is unreadable."""
    raw = _loads(body)
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise MalformedEnvelopeError("empty batch")
    good: list[EventEnvelope] = []
    bad: list[tuple[object, str]] = []
    for item in items:
        try:
            good.append(_from_mapping(item))
        except EnvelopeError as exc:
            bad.append((item, exc.reason))
    return good, bad
