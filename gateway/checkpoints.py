"""Writing each shard's last broker-confirmed seq to Redis, so a successor RESUMEs from it.

Written every :data:`INTERVAL` seconds and once more at close; only what changed is written.
A kill -9 replays at most one interval's events, which workers deduplicate. While Redis is
away the writes are skipped (said once) and :attr:`CheckpointWriter.redis_up` is false.
"""

from __future__ import annotations

import logging
import typing

from shared import redis_client

if typing.TYPE_CHECKING:
    from gateway import publisher, sessions

_LOGGER = logging.getLogger("shardline.gateway.checkpoints")

#: How often confirmed seqs are written to Redis (a kill -9 replays at most this much more).
INTERVAL: typing.Final[float] = 0.25


class CheckpointWriter:
    def __init__(self, events: publisher.EventPublisher, store: sessions.SessionStore) -> None:
        self._publisher = events
        self._store = store
        self._written: dict[int, sessions.Checkpoint] = {}
        #: False while Redis cannot be written (``shardline_gateway_redis_up``).
        self.redis_up = True

    async def write(self) -> None:
        marks = self._publisher.checkpoints()
        changed = {s: m for s, m in marks.items() if self._written.get(s) != m}
        if not changed:
            return
        try:
            await self._store.checkpoint(changed)
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
        self._written.update(changed)

    async def finish(self) -> None:
        """At close: what was read is published and confirmed, and its seqs written."""
        await self._publisher.drain(timeout=10)
        await self.write()
        await self._publisher.close()
