"""A re-shard plan: what moving the pool to a new shard count takes, before anything moves.

Discord's zero-downtime way (and the one Shardline's gateways follow) is to start the new
shard layout's sessions beside the old ones and switch over once all are READY. The plan says
how many session starts that spends, how long identifying takes at the pool's
``max_concurrency``, and which gateway gets which shards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import typing

from shared import fleet, keys, sharding
from shared import reshard as shared_reshard
from shared import status as status_module

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared.secret import Secret

#: Discord lets each identify bucket start one session per this many seconds.
IDENTIFY_SECONDS: typing.Final = keys.IDENTIFY_WINDOW


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    current: int | None
    target: int
    max_concurrency: int
    gateways: list[str]
    ranges: list[range]
    session_starts_needed: int
    session_starts_remaining: int | None
    identify_seconds: float
    guilds_per_shard: float | None

    @property
    def problems(self) -> list[str]:
        found = []
        if self.current == self.target:
            found.append(f"the pool already runs {self.target} shards")
        if not self.gateways:
            found.append("no live gateway would take the new shards")
        if (
            self.session_starts_remaining is not None
            and self.session_starts_remaining < self.session_starts_needed
        ):
            found.append(
                f"only {self.session_starts_remaining} session starts remain today; "
                f"{self.session_starts_needed} are needed"
            )
        if self.guilds_per_shard is not None and self.guilds_per_shard > 2500:
            found.append(
                f"{self.guilds_per_shard:.0f} guilds per shard: Discord allows at most 2,500"
            )
        return found


async def plan(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    *,
    current: int | None,
    target: int,
    max_concurrency: int,
    gateways: list[str],
) -> Plan:
    if target < 1:
        raise ValueError("the new shard count must be at least 1")
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    remaining = await redis.hget(redis_keys.session_start_ledger(), "remaining")
    guilds = await redis.scard(redis_keys.guilds())
    waves = math.ceil(target / max_concurrency)
    return Plan(
        current=current,
        target=target,
        max_concurrency=max_concurrency,
        gateways=gateways,
        ranges=sharding.split_shards(target, len(gateways)) if gateways else [],
        session_starts_needed=target,
        session_starts_remaining=int(remaining) if remaining is not None else None,
        identify_seconds=(waves - 1) * IDENTIFY_SECONDS,
        guilds_per_shard=guilds / target if guilds else None,
    )


# --- the switch-over -----------------------------------------------------------------------

#: How long the switch and the retirement may each take (the warming has ``--timeout``).
PHASE_TIMEOUT: typing.Final[float] = 120.0


class ReshardError(Exception):
    """The re-shard could not go on; the record says where it stopped."""


class ReshardTimeoutError(ReshardError):
    """A step did not finish in time (the warming is then aborted, later steps stay put)."""


Say = typing.Callable[[str], None]
Statuses = list[status_module.GatewayStatus]


async def _statuses(redis: aioredis.Redis, redis_keys: keys.RedisKeys) -> Statuses:
    """Fresh statuses of gateways that have not retired."""
    now = time.time()
    statuses = await fleet.gateway_statuses(redis, redis_keys)
    return [s for s in statuses if not s.retired and s.fresh(now)]


def ready_shards(statuses: Statuses, target: int) -> set[int]:
    """The new layout's shards that a gateway of it reports connected (each counted once)."""
    return {
        shard_id
        for status in statuses
        if status.shard_count == target
        for shard_id, shard in status.shards.items()
        if shard.connected and shard_id < target
    }


async def _step(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    record: shared_reshard.Reshard,
    state: shared_reshard.State,
    admin_key: Secret,
) -> shared_reshard.Reshard:
    moved = shared_reshard.step(record, state)
    if not await shared_reshard.transition(
        redis, redis_keys, moved, expected=[record.state], admin_key=admin_key
    ):
        now = await shared_reshard.load(redis, redis_keys, admin_key)
        where = now.state.value if now is not None else "gone"
        raise ReshardError(f"the re-shard record changed under this run (now {where}); stopped")
    return moved


async def switch_over(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    *,
    source: int,
    target: int,
    say: Say,
    timeout: float,
    admin_key: Secret,
    poll: float = 0.5,
) -> None:
    """Move the pool from ``source`` to ``target`` shards, the way Discord documents it.

    Standby gateways (``SHARD_COUNT=target``, ``GATEWAY_STANDBY=true``) identify beside the
    old layout; once every new shard is READY they publish too, then the old layout closes.
    Progress goes to ``say``. A run to the same target that stopped half-way carries on from
    where the record says; the warming is aborted after ``timeout`` (the old layout never
    stopped); later steps that overrun leave the record for ``--abort`` or another run.
    """
    if target < 1 or source < 1:
        raise ReshardError("shard counts must be at least 1")
    current = await shared_reshard.load(redis, redis_keys, admin_key)
    if current is not None and current.state in shared_reshard.IN_PROGRESS:
        if current.target != target:
            raise ReshardError(
                f"a re-shard to {current.target} shards is already {current.state.value}"
            )
        record = current
        say(f"carrying on with the re-shard to {target} shards ({current.state.value})")
    else:
        # Signed later than the record it replaces, whatever this machine's clock says.
        at = max(time.time(), current.at + 0.001 if current is not None else 0.0)
        record = shared_reshard.Reshard(source, target, shared_reshard.State.WARMING, at)
        expected: list[shared_reshard.State | None] = [None]
        if current is not None:
            expected.append(current.state)
        if not await shared_reshard.transition(
            redis, redis_keys, record, expected=expected, admin_key=admin_key
        ):
            raise ReshardError("another re-shard started at the same moment; stopped")
        say(
            f"warming: start gateways with SHARD_COUNT={target} GATEWAY_STANDBY=true; "
            f"they identify beside the {source}-shard layout and publish nothing yet"
        )
    if record.state is shared_reshard.State.WARMING:
        await _warm(redis, redis_keys, record, say, timeout, poll, admin_key)
        record = await _step(redis, redis_keys, record, shared_reshard.State.SWITCHING, admin_key)
    if record.state is shared_reshard.State.SWITCHING:
        say("switching: the new layout publishes (events of the overlap may arrive twice)")
        await _wait_until(
            redis, redis_keys, time.monotonic() + PHASE_TIMEOUT,
            lambda statuses: not any(
                s.standby for s in statuses if s.shard_count == target
            ) and len(ready_shards(statuses, target)) >= target,
            "the new layout did not start publishing",
        )  # fmt: skip
        record = await _step(redis, redis_keys, record, shared_reshard.State.RETIRING, admin_key)
    say(f"retiring: the {record.source}-shard layout closes its sessions")
    await _wait_until(
        redis, redis_keys, time.monotonic() + PHASE_TIMEOUT,
        lambda statuses: not any(
            s.shards for s in statuses if s.shard_count == record.source
        ),
        "gateways of the old layout still hold shards",
    )  # fmt: skip
    await _step(redis, redis_keys, record, shared_reshard.State.DONE, admin_key)
    say(
        f"done: the pool runs {target} shards; the old gateways hold nothing and can be "
        f"removed (deploy later ones with SHARD_COUNT={target}, without GATEWAY_STANDBY)"
    )


async def _warm(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    record: shared_reshard.Reshard,
    say: Say,
    timeout: float,
    poll: float,
    admin_key: Secret,
) -> None:
    """Until every new shard is READY on a standby gateway; aborted after ``timeout``."""
    deadline = time.monotonic() + timeout
    shown = -1
    target = record.target
    while True:
        statuses = await _statuses(redis, redis_keys)
        ready = len(ready_shards([s for s in statuses if s.standby], target))
        if ready != shown:
            say(f"  {ready}/{target} new shards READY")
            shown = ready
        if ready >= target:
            return
        if time.monotonic() > deadline:
            aborted = shared_reshard.step(record, shared_reshard.State.ABORTED)
            await shared_reshard.transition(
                redis, redis_keys, aborted, expected=[record.state], admin_key=admin_key
            )
            raise ReshardTimeoutError(
                f"only {ready}/{target} new shards were READY in time: aborted, the "
                f"{record.source}-shard layout kept serving"
            )
        await asyncio.sleep(poll)


async def _wait_until(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    deadline: float,
    done: typing.Callable[[Statuses], bool],
    failure: str,
) -> None:
    while not done(await _statuses(redis, redis_keys)):
        if time.monotonic() > deadline:
            raise ReshardTimeoutError(
                f"{failure} in time; run the same command again to carry on, or --abort"
            )
        await asyncio.sleep(0.25)
