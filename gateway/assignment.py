"""Lease-mode assignment: this gateway holds its fair share of the pool's shards, no more.

Every third of the lease TTL it renews its leases (stopping any shard whose lease another
gateway now holds), then rebalances by ``leases.ShardLeases.fair_share``: shards above the
share are stopped with their sessions kept and released (the next holder RESUMEs), free
shards are claimed up to it and started in the background, so a slow handshake never delays
a renewal.
"""

from __future__ import annotations

import contextlib
import logging
import time
import typing

from shared import redis_client

if typing.TYPE_CHECKING:
    from gateway import holder, leases
    from shared import lifecycle

_LOGGER = logging.getLogger("shardline.gateway.assignment")

#: The name of the loop (stopped alone when a re-shard retires this layout).
LOOP: typing.Final[str] = "leases"


async def start(
    leases_: leases.ShardLeases, shards: holder.ShardHolder, tasks: lifecycle.TaskGroup
) -> LeaseAssignment:
    """Claim this gateway's share now, and keep it every third of the lease TTL."""
    found = LeaseAssignment(leases_, shards, tasks)
    try:
        await found.rebalance()
    except redis_client.REDIS_ERRORS as exc:
        # Started while Redis is away (a hang, a restart): the loop claims once it answers,
        # not at once (it may come back empty, with live shards' leases unwritten yet).
        _LOGGER.warning(
            "Redis unavailable at start: shards are claimed once it answers",
            extra={"error": repr(exc)},
        )
        found.hold_claims()
    found.start_loop()
    return found


class LeaseAssignment:
    def __init__(
        self,
        leases_: leases.ShardLeases,
        shards: holder.ShardHolder,
        tasks: lifecycle.TaskGroup,
        *,
        clock: typing.Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases_
        self._shards = shards
        self._tasks = tasks
        self._clock = clock
        #: Shards this gateway holds a lease for (started, or starting).
        self.claimed: set[int] = set()
        #: No free shard is claimed before this time (``clock``): after Redis was away or
        #: forgot the leases, a free lease may be a live shard whose holder has not written
        #: it back yet, and claiming it would IDENTIFY over a running session.
        self.claims_after = 0.0
        self._told_young = False

    def start_loop(self) -> None:
        self._tasks.every(self.leases.ttl / 3, self.round, name=LOOP)

    async def round(self) -> None:
        try:
            await self.renew()
        except Exception:
            self.hold_claims()  # Redis away: it may come back empty
            raise
        if self.leases.forgotten:
            _LOGGER.warning(
                "Redis forgot the shard leases: wrote ours back; claiming none for one TTL",
                extra={"shards": self.leases.forgotten},
            )
            self.hold_claims()
        await self.rebalance()

    def hold_claims(self) -> None:
        """Every holder renews within a third of the TTL: after one TTL, a free lease is free."""
        self.claims_after = self._clock() + self.leases.ttl

    async def renew(self) -> None:
        """Keep our leases alive; stop any shard whose lease another gateway now holds."""
        lost = await self.leases.renew(sorted(self.claimed))
        for shard_id in lost:
            _LOGGER.warning("lost the lease of a shard; stopping it", extra={"shard": shard_id})
            self.claimed.discard(shard_id)
            self._tasks.spawn(self._shards.stop(shard_id), name=f"stop-{shard_id}")

    async def rebalance(self) -> None:
        """Hold this gateway's fair share of the pool's shards, no more, no less."""
        live = await self.leases.heartbeat()
        share = self.leases.fair_share(live)
        for shard_id in sorted(self.claimed)[share:]:
            # Stop first (session kept, seq written), then let another gateway take it.
            self.claimed.discard(shard_id)
            try:
                await self._shards.stop(shard_id)
            except Exception as exc:  # stopped as far as it goes: the lease goes back anyway
                _LOGGER.warning(
                    "shard not stopped cleanly", extra={"shard": shard_id, "error": repr(exc)}
                )
            await self.leases.release(shard_id)
            _LOGGER.info("handed a shard back to the pool", extra={"shard": shard_id})
        wanted = share - len(self.claimed)
        if wanted <= 0 or self._clock() < self.claims_after:
            return
        holders = await self.leases.holders()
        for shard_id in (s for s, held_by in enumerate(holders) if held_by is None):
            if wanted == 0:
                break
            if await self.leases.claim(shard_id):
                wanted -= 1
                self.claimed.add(shard_id)
                self._tasks.spawn(self._start_claimed(shard_id), name=f"start-{shard_id}")
            elif self.leases.redis_too_young:
                if not self._told_young:
                    self._told_young = True
                    _LOGGER.warning(
                        "Redis started less than a lease TTL ago: claiming no free shard "
                        "until every holder has written its lease back"
                    )
                return
        self._told_young = False

    async def _start_claimed(self, shard_id: int) -> None:
        try:
            await self._shards.start(shard_id)
        except Exception as exc:
            _LOGGER.warning(
                "could not start a claimed shard", extra={"shard": shard_id, "error": repr(exc)}
            )
            self.claimed.discard(shard_id)
            with contextlib.suppress(Exception):
                await self._shards.stop(shard_id)
                await self.leases.release(shard_id)

    async def release(self, shard_ids: typing.Iterable[int]) -> None:
        """Give the leases back (the shards are stopped) and leave the pool's gateway list."""
        for shard_id in shard_ids:
            with contextlib.suppress(Exception):
                await self.leases.release(shard_id)
        self.claimed.clear()
        with contextlib.suppress(Exception):
            await self.leases.leave()
