"""A re-shard in progress: the record the operator CLI moves forward and gateways follow.

Discord's zero-downtime way to change the shard count: start the new layout's sessions beside
the old ones, switch over once all are READY, then close the old ones. Gateways of the new
layout run with ``GATEWAY_STANDBY`` (identifying, publishing nothing) until the switch.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import typing

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys

__all__: typing.Sequence[str] = ("Reshard", "State", "load", "save")


class State(enum.StrEnum):
    WARMING = "warming"
    """Standby gateways of the new layout identify; they publish nothing."""
    SWITCHING = "switching"
    """The new layout publishes too (events of the overlap, about a second, may come twice)."""
    RETIRING = "retiring"
    """The old layout's gateways close their shards for good and hold nothing more."""
    DONE = "done"
    ABORTED = "aborted"
    """Called off before the switch: standby gateways close their sessions and hold nothing."""


#: States in which a re-shard is under way (another one cannot start).
IN_PROGRESS: typing.Final = frozenset({State.WARMING, State.SWITCHING, State.RETIRING})


@dataclasses.dataclass(frozen=True, slots=True)
class Reshard:
    source: int
    """The old layout's shard count."""
    target: int
    state: State
    at: float = dataclasses.field(default_factory=time.time)

    def publishes(self, shard_count: int, *, standby: bool) -> bool:
        """Whether a gateway of ``shard_count`` shards (standby or not) should publish now."""
        if shard_count == self.target and self.state in (
            State.SWITCHING,
            State.RETIRING,
            State.DONE,
        ):
            return True
        if standby:
            return False
        return not (shard_count != self.target and self.state in (State.RETIRING, State.DONE))

    def retires(self, shard_count: int, *, standby: bool) -> bool:
        """Whether a gateway of ``shard_count`` shards should hold nothing from now on."""
        if standby and self.state is State.ABORTED:
            return True
        return shard_count != self.target and self.state in (State.RETIRING, State.DONE)


async def load(redis: aioredis.Redis, redis_keys: keys.RedisKeys) -> Reshard | None:
    raw = await redis.hgetall(redis_keys.reshard())
    if not raw:
        return None
    fields = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
    try:
        return Reshard(
            source=int(fields["source"]),
            target=int(fields["target"]),
            state=State(fields["state"]),
            at=float(fields.get("at", 0)),
        )
    except (KeyError, ValueError):
        return None


async def save(redis: aioredis.Redis, redis_keys: keys.RedisKeys, record: Reshard) -> None:
    await redis.hset(
        redis_keys.reshard(),
        mapping={
            "source": record.source,
            "target": record.target,
            "state": record.state.value,
            "at": record.at,
        },
    )
