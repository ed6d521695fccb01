"""A re-shard in progress: the record the operator CLI moves forward and gateways follow.

Discord's zero-downtime way to change the shard count: start the new layout's sessions beside
the old ones, switch over once all are READY, then close the old ones. Gateways of the new
layout run with ``GATEWAY_STANDBY`` (identifying, publishing nothing) until the switch.
The record is signed with the operator's ``ADMIN_KEY`` (``shared.admin``): gateways follow
no other.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import typing

from shared import admin, redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys
    from shared.secret import Secret

__all__: typing.Sequence[str] = ("Reshard", "State", "load", "save", "step", "transition")


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
        """Whether a gateway of ``shard_count`` shards should hold nothing from now on: the
        old layout once it is retiring, the new one when the re-shard was aborted. A record
        about other layouts (an earlier re-shard) retires nobody."""
        if self.state is State.ABORTED:
            return shard_count == self.target
        if self.state in (State.RETIRING, State.DONE):
            return shard_count == self.source and not standby
        return False


def step(record: Reshard, state: State) -> Reshard:
    """The record moved to ``state``, signed later than ``record`` even if this machine's
    clock is behind the one that wrote it (gateways follow no step older than one they did)."""
    return dataclasses.replace(record, state=state, at=max(time.time(), record.at + 0.001))


async def load(
    redis: aioredis.Redis, redis_keys: keys.RedisKeys, admin_key: Secret | None
) -> Reshard | None:
    """The pool's re-shard record, ``None`` without one; :class:`shared.admin.ActionRefusedError`
    when the record is not signed with ``admin_key`` (whoever wrote it has no say)."""
    raw = await redis.hgetall(redis_keys.reshard())
    if not raw:
        return None
    fields = redis_client.text_map(raw)
    body = admin.verify(admin_key, redis_keys.prefix, fields.get("sig"), admin.RESHARD)
    try:
        return Reshard(
            source=int(body["source"]),
            target=int(body["target"]),
            state=State(body["state"]),
            at=float(body["at"]),
        )
    except (KeyError, TypeError, ValueError):
        raise admin.ActionRefusedError("not a re-shard record") from None


def _fields(record: Reshard, admin_key: Secret, scope: str) -> list[str]:
    """The record's fields (``state`` is what the compare-and-set reads) and their signature."""
    signature = admin.sign(
        admin_key, scope, admin.RESHARD, at=record.at,
        source=record.source, target=record.target, state=record.state.value,
    )  # fmt: skip
    return [
        "source", str(record.source), "target", str(record.target),
        "state", record.state.value, "at", repr(record.at), "sig", signature,
    ]  # fmt: skip


async def save(
    redis: aioredis.Redis, redis_keys: keys.RedisKeys, record: Reshard, admin_key: Secret
) -> None:
    await redis.hset(redis_keys.reshard(), items=_fields(record, admin_key, redis_keys.prefix))


# Replace the record only if its state is one of ARGV[2 .. 1 + ARGV[1]] ("" for no record);
# the fields to write follow.
_TRANSITION: typing.Final = """
local state = redis.call('HGET', KEYS[1], 'state') or ''
local n = tonumber(ARGV[1])
for i = 2, n + 1 do
  if ARGV[i] == state then
    redis.call('HSET', KEYS[1], unpack(ARGV, n + 2))
    return 1
  end
end
return 0
"""


async def transition(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    record: Reshard,
    *,
    expected: typing.Collection[State | None],
    admin_key: Secret,
) -> bool:
    """Write ``record`` only if the stored state is one of ``expected`` (``None``: no record);
    two operators, or an abort during a run, cannot overwrite each other's step."""
    allowed = ["" if state is None else state.value for state in expected]
    script = redis.register_script(_TRANSITION)
    args: list[str | int] = [
        len(allowed), *allowed, *_fields(record, admin_key, redis_keys.prefix),
    ]  # fmt: skip
    return bool(await script(keys=[redis_keys.reshard()], args=args))
