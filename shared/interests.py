"""Selective forwarding's record, defined once: which events each worker group listens to.

Each group keeps a Redis set (``keys.interests(group)``) of the event names it listens to plus
:data:`MARKER`, so that a group that announced "nothing" differs from a set Redis lost; the
pool's index (``keys.interest_groups()``) names the groups, and every change is announced on
``keys.interests_channel()`` (the message is the group's name). Gateways acknowledge the
:func:`version` of each group's set they apply in their status record; ``None`` there means
"publishes every event", which covers every group.

Unknown means publish: a missing index, a group listed without its set, or a set without the
marker makes :func:`read` return ``None``, never an empty set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing

from shared import redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys

__all__: typing.Sequence[str] = (
    "MARKER",
    "Interests",
    "acknowledged",
    "announce",
    "group_members",
    "read",
    "version",
)

#: A member no event name can be: the set was announced (empty of events or not).
MARKER: typing.Final[str] = "*announced"


@dataclasses.dataclass(frozen=True, slots=True)
class Interests:
    """What every announced group listens to, and the version of each group's set."""

    events: frozenset[str]
    versions: typing.Mapping[str, str]


def version(events: typing.Iterable[str]) -> str:
    """A short hash of a group's event names (the marker excluded), order-free."""
    names = sorted({name for name in events if name != MARKER})
    return hashlib.sha1("\n".join(names).encode(), usedforsecurity=False).hexdigest()[:12]


def acknowledged(acks: typing.Mapping[str, str] | None, group: str, current: str) -> bool:
    """Whether a gateway's acknowledgements cover ``group`` at version ``current``."""
    return acks is None or acks.get(group) == current


async def announce(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    group: str,
    events: typing.Iterable[str],
    *,
    replace: bool,
) -> bool:
    """Write ``group``'s interests and notify the gateways when anything changed.

    ``replace`` (a replica starting) sets exactly ``events``; otherwise (re-announcing) the
    events are added, so replicas of two deploys side by side never take each other's away
    and a set Redis lost comes back. Returns whether a notification went out.
    """
    record = redis_keys.interests(group)
    members = [*sorted(set(events)), MARKER]
    async with redis.pipeline(transaction=True) as pipe:
        if replace:
            pipe.delete(record)
        pipe.sadd(record, *members)
        pipe.sadd(redis_keys.interest_groups(), group)
        results = await pipe.execute()
    added = results[-2:]
    changed = replace or any(int(n) for n in added)
    if changed:
        await redis.publish(redis_keys.interests_channel(), group)
    return changed


async def group_members(
    redis: aioredis.Redis, redis_keys: keys.RedisKeys, group: str
) -> frozenset[str]:
    """The raw members of ``group``'s set (the marker included when announced)."""
    return frozenset(
        redis_client.text(m) for m in await redis.smembers(redis_keys.interests(group))
    )


async def read(redis: aioredis.Redis, redis_keys: keys.RedisKeys) -> Interests | None:
    """Every announced group's interests, or ``None`` when any of it is unknown."""
    groups = sorted(
        redis_client.text(g) for g in await redis.smembers(redis_keys.interest_groups())
    )
    if not groups:
        return None
    async with redis.pipeline(transaction=False) as pipe:
        for group in groups:
            pipe.smembers(redis_keys.interests(group))
        sets = await pipe.execute()
    events: set[str] = set()
    versions: dict[str, str] = {}
    for group, raw in zip(groups, sets, strict=True):
        members = {redis_client.text(m) for m in raw}
        if MARKER not in members:
            return None  # lost, evicted or written by an older release: unknown
        members.discard(MARKER)
        events |= members
        versions[group] = version(members)
    return Interests(frozenset(events), versions)
