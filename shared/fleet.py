"""Fleet requests: ask every gateway or worker of a pool a registered question.

Who is in the fleet comes from what processes already publish for operators: gateways' status
keys and the workers' heartbeat set. Each target is asked on its own queue and answers or
fails on its own: one dead process costs its entry a clear error, never the others' answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import typing

from shared import keys as keys_module
from shared import redis_client, rpc, status

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__: typing.Sequence[str] = ("ROLES", "FleetAnswer", "ask", "gateway_statuses", "members")

ROLES: typing.Final[frozenset[str]] = frozenset({"gateway", "worker"})
#: What a fleet request waits for each target unless told otherwise.
DEFAULT_TIMEOUT: typing.Final[float] = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class FleetAnswer:
    """One target's answer: ``value``, or the ``error`` that stands in for it."""

    target: str
    role: str
    value: typing.Any = None
    error: rpc.RpcError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def _live(redis: aioredis.Redis, index: str) -> list[str]:
    found = await redis.zrangebyscore(index, time.time() - keys_module.HEALTH_TTL, "+inf")
    return sorted(redis_client.text(m) for m in found)


async def members(redis: aioredis.Redis, keys: keys_module.RedisKeys, role: str) -> list[str]:
    """Process ids of the pool's live gateways or workers, sorted."""
    if role == "worker":
        return await _live(redis, keys.workers())
    if role == "gateway":
        return await _live(redis, keys.gateway_index())
    raise ValueError(f"unknown role {role!r}: expected one of {sorted(ROLES)}")


async def gateway_statuses(
    redis: aioredis.Redis, keys: keys_module.RedisKeys
) -> list[status.GatewayStatus]:
    """The status every live gateway of the pool publishes: two round trips, whatever else
    the keyspace holds; an unreadable one is skipped (and logged)."""
    names = [keys.gateway_status(g) for g in await members(redis, keys, "gateway")]
    values = await redis.mget(names) if names else []
    found = (status.GatewayStatus.from_json(value) for value in values if value)
    return [one for one in found if one is not None]


async def ask(
    endpoint: rpc.Endpoint,
    redis: aioredis.Redis,
    keys: keys_module.RedisKeys,
    question: str,
    args: typing.Any = None,
    *,
    roles: typing.Iterable[str] = ("gateway", "worker"),
    timeout: float = DEFAULT_TIMEOUT,
) -> list[FleetAnswer]:
    """Ask ``question`` of every live process of the given roles, each within ``timeout``."""
    targets = [(role, target) for role in roles for target in await members(redis, keys, role)]

    async def one(role: str, target: str) -> FleetAnswer:
        try:
            value = await endpoint.request(
                endpoint.topology.process_key(endpoint.pool, target),
                question,
                args,
                timeout=timeout,
                target=f"{role} {target}",
            )
        except rpc.RpcError as exc:
            return FleetAnswer(target, role, error=exc)
        return FleetAnswer(target, role, value=value)

    return list(await asyncio.gather(*(one(role, target) for role, target in targets)))
