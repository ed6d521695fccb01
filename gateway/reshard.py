"""Following the pool's re-shard record (``shared.reshard``, written by ``shardline reshard``).

A re-shard runs two layouts side by side: the old one publishing, the new one (gateways
started with ``GATEWAY_STANDBY``) identified and muted. When the record switches, the new
layout publishes and takes gateway commands; when it retires the old layout, those gateways
close their shards for good (forgetting the sessions) and hold nothing. Every step is
idempotent and re-read every :data:`INTERVAL` seconds. A record the admin key does not vouch
for, or one older than a step already followed (a replay), is refused, said once per reason.

A publishing gateway retires only while gateways of the layout that replaces it publish
(``shared.status.GatewayStatus.serves``): a record left from an earlier re-shard, or one
whose new layout was removed since, never leaves the pool without gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing

from gateway import assignment as assignment_module
from gateway import sessions
from shared import admin, fleet, redis_client, reshard, status

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway import holder, publisher
    from shared import keys, lifecycle
    from shared.secret import Secret

_LOGGER = logging.getLogger("shardline.gateway.reshard")

#: How often the record is read (the overlap of the two layouts lasts about this long).
INTERVAL: typing.Final[float] = 0.5


class ReshardFollower:
    """This gateway's place in a re-shard: whether it stands by, publishes or retired."""

    def __init__(  # noqa: PLR0913 - every collaborator a re-shard step touches, by name
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        *,
        admin_key: Secret | None,
        standby: bool,
        shards: holder.ShardHolder,
        events: publisher.EventPublisher,
        tasks: lifecycle.TaskGroup,
        write_status: typing.Callable[[], typing.Awaitable[None]],
        clock: typing.Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = redis_keys
        self._admin_key = admin_key
        #: Started as a re-shard's new layout (``GATEWAY_STANDBY``).
        self._started_standby = standby
        #: A re-shard's new layout, publishing nothing until the switch.
        self.standby = standby
        #: A re-shard's old layout after the switch (or an aborted standby): holds no shard.
        self.retired = False
        self.shards = shards
        self._publisher = events
        self._tasks = tasks
        self._write_status = write_status
        self._clock = clock
        self._started_at = clock()
        self.assignment: assignment_module.LeaseAssignment | None = None
        #: Voice follows publishing: started when a standby goes live, stopped at retirement.
        self.start_voice: typing.Callable[[], typing.Awaitable[None]] | None = None
        self.stop_voice: typing.Callable[[], typing.Awaitable[None]] | None = None
        self._followed_at = 0.0
        self._refused: str | None = None
        self._successor_missing = False
        events.muted = standby

    @property
    def publishes(self) -> bool:
        """This layout's events reach the workers (not standing by, not retired)."""
        return not self.standby and not self.retired

    @property
    def _count(self) -> int:
        return self.shards.group.shard_count

    async def settle_at_start(self) -> None:
        """Where a starting gateway stands: retired at once when the pool moved past its
        layout, live at once when it started as standby after the switch."""
        count = self._count
        record = await self.record()
        if (
            record is not None
            and record.retires(count, standby=self.standby)
            and await self._successor_serves(record, starting=True)
        ):
            self.retired = True
            _LOGGER.warning(
                "this pool was re-sharded: this gateway takes no shard (remove it, or run it "
                "with the new SHARD_COUNT)",
                extra={"shard_count": count, "pool_shard_count": record.target},
            )
        elif self.standby and record is not None and record.publishes(count, standby=True):
            self.standby = self._publisher.muted = False  # started after the switch
        elif self.standby and await self.layout_serves(count):
            self.retired = True
            _LOGGER.error(
                "GATEWAY_STANDBY with the SHARD_COUNT the pool already serves: this gateway "
                "takes no shard (a standby gateway runs the re-shard's new count)",
                extra={"shard_count": count},
            )

    def start_loop(self) -> None:
        self._tasks.every(INTERVAL, self.round, name="reshard")

    async def record(self) -> reshard.Reshard | None:
        """The re-shard record, if the operator's key vouches for it and it is not older than
        one this gateway already followed (a replayed earlier step)."""
        try:
            found = await reshard.load(self._redis, self._keys, self._admin_key)
            if found is not None and found.at < self._followed_at:
                raise admin.ActionRefusedError("older than a step already followed")  # noqa: TRY301
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.debug("re-shard record not read", extra={"error": str(exc)})
            return None
        except admin.ActionRefusedError as exc:
            if str(exc) != self._refused:  # one line per reason, not one per round
                self._refused = str(exc)
                _LOGGER.warning("re-shard record refused", extra={"reason": str(exc)})
            return None
        if found is not None:
            self._followed_at = found.at
        return found

    async def round(self) -> None:
        record = await self.record()
        if record is None:
            return
        count = self._count
        if self.retired:
            revived = record.state is reshard.State.WARMING and record.target == count
            if revived and self._started_standby and self.assignment is not None:
                await self._revive()
            return
        if self.standby and record.publishes(count, standby=True):
            await self._go_live()
        elif record.retires(count, standby=self.standby) and await self._successor_serves(record):
            await self._retire()

    async def layout_serves(
        self, shard_count: int, *, since: float = 0.0, connected: bool = False
    ) -> bool:
        """Whether gateways that publish run ``shard_count`` shards (``GatewayStatus.serves``)."""
        now = self._clock()
        return any(
            gateway.serves(shard_count, now=now, since=since, connected=connected)
            for gateway in await fleet.gateway_statuses(self._redis, self._keys)
        )

    async def _successor_serves(self, record: reshard.Reshard, *, starting: bool = False) -> bool:
        """Whether this gateway may retire by ``record``: a standby one always (it publishes
        nothing), a publishing one only while gateways of the layout that stays publish (the
        new one; the old one when the re-shard was aborted), with a shard connected.
        ``starting``: only statuses written since this gateway started count (a gateway that
        just died leaves a fresh one behind), waited for up to one status interval."""
        successor = record.source if record.state is reshard.State.ABORTED else record.target
        if self.standby:
            return True
        since = self._started_at if starting else 0.0
        deadline = time.monotonic() + (status.STATUS_INTERVAL + 1.0 if starting else 0.0)
        while not await self.layout_serves(successor, since=since, connected=True):
            if time.monotonic() >= deadline:
                if not self._successor_missing:
                    self._successor_missing = True
                    _LOGGER.error(
                        "the re-shard record retires this layout, but no gateway of the layout "
                        "that replaces it publishes: serving on (start that layout; a finished "
                        "record can be removed with shardline reshard --forget)",
                        extra={"shard_count": self._count, "successor_shard_count": successor},
                    )
                return False
            await asyncio.sleep(0.25)
        self._successor_missing = False
        return True

    async def hand_over(self) -> None:
        """At close: stop every held shard with its session kept, and give the leases back."""
        held = self.shards.held
        stopped = await asyncio.gather(*(self.shards.stop(s) for s in held), return_exceptions=True)
        for shard_id, outcome in zip(held, stopped, strict=True):
            if isinstance(outcome, Exception):  # the leases go back all the same
                _LOGGER.warning(
                    "shard not stopped cleanly at close",
                    extra={"shard": shard_id, "error": repr(outcome)},
                )
        if self.assignment is not None:
            await self.assignment.release(held)

    async def _go_live(self) -> None:
        """The re-shard switched: this standby gateway's shards publish and take commands."""
        await self.shards.route_all()
        self._publisher.muted = False
        self.standby = False
        _LOGGER.info("re-shard: publishing", extra={"shard_count": self._count})
        await self._write_status()
        if self.start_voice is not None:
            await self.start_voice()

    async def _revive(self) -> None:
        """A standby gateway retired by an aborted re-shard, and a new one to its count."""
        assert self.assignment is not None
        self.standby = self._publisher.muted = True
        self.retired = False
        _LOGGER.info("re-shard: standing by again", extra={"shard_count": self._count})
        await self.assignment.rebalance()
        self.assignment.start_loop()
        await self._write_status()

    async def _retire(self) -> None:
        """The re-shard moved on without this layout: close every shard for good."""
        count = self._count
        await self._tasks.stop_loops(assignment_module.LOOP)
        await self._tasks.wait_work(timeout=30)  # shards claimed a moment ago, still starting
        if self.stop_voice is not None:  # its Lavalink sessions stay resumable
            await self.stop_voice()
        store = sessions.SessionStore(self._redis, self._keys)
        held = self.shards.held
        for shard_id in held:
            try:
                await self.shards.stop(shard_id)
            except Exception as exc:  # closed regardless; only its last checkpoint is missing
                _LOGGER.warning(
                    "re-shard: shard closed without its checkpoint",
                    extra={"shard": shard_id, "error": repr(exc)},
                )
            with contextlib.suppress(*redis_client.REDIS_ERRORS):
                await store.forget(shard_id, count)
        if self.assignment is not None:
            await self.assignment.release(held)
        self.retired = True
        _LOGGER.info("re-shard: this layout retired", extra={"shard_count": count, "shards": held})
        await self._write_status()
