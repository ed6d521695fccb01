"""Writing each shard's last broker-confirmed seq to Redis, so a successor RESUMEs from it.

Written every :data:`INTERVAL` seconds and once more at close; what changed is written then,
and every held shard's record every :data:`REFRESH` seconds. A kill -9 replays at most one
interval's events, which workers deduplicate. While Redis is away the writes are skipped (said
once) and :attr:`CheckpointWriter.redis_up` is false.

The refresh is what keeps a session alive in Redis when nothing changes: a quiet shard's record
expired ``SESSION_TTL`` (15 min) after its last event, and its next hand-off IDENTIFYed; and a
Redis restarted empty (soak seed 457115) lost the sessions of shards whose position did not move
(a broker down meanwhile confirms nothing), so a gateway killed then took them with it. A record
found missing is written whole; when one is, every other is rewritten at the next interval.
"""

from __future__ import annotations

import logging
import time
import typing

from shared import redis_client

if typing.TYPE_CHECKING:
    from gateway import publisher, sessions

_LOGGER = logging.getLogger("shardline.gateway.checkpoints")

#: How often confirmed seqs are written to Redis (a kill -9 replays at most this much more).
INTERVAL: typing.Final[float] = 0.25
#: How often every held shard's record is written, changed or not (its TTL, and what Redis
#: may have forgotten).
REFRESH: typing.Final[float] = 5.0


class CheckpointWriter:
    def __init__(
        self,
        events: publisher.EventPublisher,
        store: sessions.SessionStore,
        *,
        clock: typing.Callable[[], float] = time.monotonic,
    ) -> None:
        self._publisher = events
        self._store = store
        self._clock = clock
        self._written: dict[int, sessions.Checkpoint] = {}
        self._refreshed_at = clock()
        #: False while Redis cannot be written (``shardline_gateway_redis_up``).
        self.redis_up = True
        #: Session records found missing and written whole again.
        self.rewritten = 0

    async def write(self) -> None:
        marks = self._publisher.checkpoints()
        now = self._clock()
        refresh = now - self._refreshed_at >= REFRESH
        changed = (
            dict(marks)
            if refresh
            else {s: m for s, m in marks.items() if self._written.get(s) != m}
        )
        if not changed:
            return
        known = set(self._written)
        try:
            recreated = await self._store.checkpoint(changed)
        except redis_client.REDIS_ERRORS as exc:
            if self.redis_up:
                _LOGGER.warning(
                    "Redis unavailable: checkpoints not saved", extra={"error": str(exc)}
                )
            self.redis_up = False
            return
        if not self.redis_up:
            _LOGGER.info("Redis available again")
        self.redis_up = True
        if refresh:
            self._refreshed_at = now
        self._written.update(changed)
        # A record this writer had written, gone: Redis forgot (restarted empty, flushed).
        forgotten = recreated & known
        if forgotten:
            self.rewritten += len(forgotten)
            _LOGGER.warning(
                "session records were missing in Redis: written again, every other too",
                extra={"shards": sorted(forgotten)},
            )
            self._written.clear()  # the next interval writes every held shard's record

    async def finish(self) -> None:
        """At close: what was read is published and confirmed, and its seqs written."""
        await self._publisher.drain(timeout=10)
        await self.write()
        await self._publisher.close()
