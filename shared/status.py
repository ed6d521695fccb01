"""The status every gateway publishes for its peers, operators and workers: one typed record.

A gateway writes it to Redis every :data:`STATUS_INTERVAL` seconds (``keys.gateway_status``,
expiring after ``keys.HEALTH_TTL``) and answers the fleet's ``stats`` question with it.
Peers decide from it whether a re-shard's layout serves, ``shardline status`` shows it, and
the core plugin's ``ping`` and ``stats`` read shard latencies from it. What "serving" means
is decided here, once: :meth:`GatewayStatus.publishes` and :meth:`GatewayStatus.serves`.
"""

from __future__ import annotations

import dataclasses
import logging
import typing

import orjson

__all__: typing.Sequence[str] = ("STATUS_INTERVAL", "GatewayStatus", "ShardStatus")

_LOGGER = logging.getLogger("shardline.status")

#: How often a gateway writes its status; three missed writes make it stale.
STATUS_INTERVAL: typing.Final[float] = 5.0
#: How old a status may be and still count (three intervals: one missed write is no death).
STALE_AFTER: typing.Final[float] = 3 * STATUS_INTERVAL


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShardStatus:
    connected: bool
    #: Heartbeat round trip in seconds; ``None`` before the first ACK.
    latency: float | None = None
    identifies: int = 0
    resumes: int = 0
    events: int = 0
    #: Waiting its turn to IDENTIFY (not connected, and not stuck).
    queued: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatus:
    gateway: str
    pool: str
    #: The layout's shard count; ``None`` before the gateway learnt it.
    shard_count: int | None
    #: Holds its shards through Redis leases (not a fixed ``SHARD_IDS``).
    leased: bool = False
    #: A re-shard's new layout, identified but not yet publishing.
    standby: bool = False
    #: A re-shard's old layout after the switch: holds no shard.
    retired: bool = False
    #: Closing (SIGTERM): its shards are being handed over.
    stopping: bool = False
    #: An operator asked it to give its shards away.
    draining: bool = False
    #: Events read from Discord and not yet confirmed by the broker.
    backlog: int = 0
    #: When it was written (Unix time).
    at: float = 0.0
    shards: typing.Mapping[int, ShardStatus] = dataclasses.field(default_factory=dict)
    #: The voice bridge's figures, when it runs one.
    lavalink: typing.Mapping[str, typing.Any] | None = None
    #: The worker groups' interest versions it applies (``shared.interests``); ``None``:
    #: it publishes every event. An older gateway's record has none: it acknowledges nothing.
    interests: typing.Mapping[str, str] | None = dataclasses.field(default_factory=dict)
    #: While shards wait for Discord to reset the pool's session starts (too few left to
    #: IDENTIFY): when it does (Unix time). ``None`` when none waits.
    session_start_wait_until: float | None = None
    #: Its circuit breakers' states by dependency (``{"redis": "open"}``; shared.breaker).
    breakers: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)

    # --- the rules ------------------------------------------------------------------------

    @property
    def publishes(self) -> bool:
        """Its shards' events reach the workers: not a standby or retired layout, not
        closing. The one meaning of "serving"."""
        return not (self.standby or self.retired or self.stopping)

    def fresh(self, now: float) -> bool:
        return now - self.at <= STALE_AFTER

    @property
    def connected(self) -> int:
        """How many of its shards are connected."""
        return sum(1 for shard in self.shards.values() if shard.connected)

    def serves(
        self, shard_count: int, *, now: float, since: float = 0.0, connected: bool = False
    ) -> bool:
        """Whether this status shows the ``shard_count`` layout serving: publishing, fresh,
        written no earlier than ``since``, and (with ``connected``) with a shard connected."""
        return (
            self.shard_count == shard_count
            and self.publishes
            and self.fresh(now)
            and self.at >= since
            and (not connected or self.connected > 0)
        )

    def state(self, *, draining: bool = False) -> str:
        """One word for operators: retired, standby, stopping, draining or serving."""
        for word, flag in (
            ("retired", self.retired),
            ("standby", self.standby),
            ("stopping", self.stopping),
            ("draining", self.draining or draining),
        ):
            if flag:
                return word
        return "serving"

    # --- the wire form ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, typing.Any]:
        """The JSON-ready form (shard ids as strings, as JSON objects need)."""
        body = dataclasses.asdict(self)
        body["shards"] = {
            str(shard_id): dataclasses.asdict(shard) for shard_id, shard in self.shards.items()
        }
        body["lavalink"] = dict(self.lavalink) if self.lavalink is not None else None
        body["interests"] = dict(self.interests) if self.interests is not None else None
        body["breakers"] = dict(self.breakers)
        return body

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, body: typing.Mapping[str, typing.Any]) -> GatewayStatus:
        """Read a status; raises ``ValueError`` (or ``KeyError``/``TypeError``) on a bad one."""
        names = {field.name for field in dataclasses.fields(ShardStatus)}
        shards = {
            int(shard_id): ShardStatus(**{k: v for k, v in shard.items() if k in names})
            for shard_id, shard in (body.get("shards") or {}).items()
        }
        count = body.get("shard_count")
        return cls(
            gateway=str(body["gateway"]),
            pool=str(body["pool"]),
            shard_count=int(count) if count is not None else None,
            leased=bool(body.get("leased")),
            standby=bool(body.get("standby")),
            retired=bool(body.get("retired")),
            stopping=bool(body.get("stopping")),
            draining=bool(body.get("draining")),
            backlog=int(body.get("backlog") or 0),
            at=float(body.get("at") or 0.0),
            shards=shards,
            lavalink=body.get("lavalink"),
            interests=_interests(body),
            session_start_wait_until=_optional_float(body.get("session_start_wait_until")),
            breakers={str(k): str(v) for k, v in (body.get("breakers") or {}).items()},
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> GatewayStatus | None:
        """A stored status, or ``None`` (logged) when it cannot be read: one bad record must
        not hide the others."""
        try:
            body = orjson.loads(raw)
            if not isinstance(body, dict):
                raise TypeError("not an object")  # noqa: TRY301
            return cls.from_dict(body)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            _LOGGER.warning("unreadable gateway status skipped", extra={"error": repr(exc)})
            return None


def _interests(body: typing.Mapping[str, typing.Any]) -> dict[str, str] | None:
    if "interests" not in body:
        return {}
    acks = body["interests"]
    return None if acks is None else {str(k): str(v) for k, v in dict(acks).items()}


def _optional_float(value: object) -> float | None:
    return None if value is None else float(typing.cast("float", value))
