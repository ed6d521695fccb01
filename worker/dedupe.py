"""Each envelope handled once, even when a RESUME replays it or a crash redelivers it.

A key per envelope (``pool:shard:session:seq``) moves from ``processing`` to ``done``. A copy
that arrives while another is processing is skipped, unless the broker redelivered it (the
holder died): then it is taken over. One pipelined ``SET NX`` per message; the ``done`` marks of
many messages go out together in the background.
"""

from __future__ import annotations

import asyncio
import logging
import typing

from shared import keys, redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import envelope

_LOGGER = logging.getLogger("shardline.worker.dedupe")
_PROCESSING_TTL: typing.Final = 120
#: "done" marks are written in the background, this often: one round trip for many events.
_FLUSH_EVERY: typing.Final = 0.01


class Deduplicator:
    def __init__(self, redis: aioredis.Redis, redis_keys: keys.RedisKeys, worker_id: str) -> None:
        self._redis = redis
        self._keys = redis_keys
        self._holder = f"processing:{worker_id}"
        self._done: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self.available = True

    async def claim(
        self, envelopes: typing.Sequence[envelope.EventEnvelope], *, redelivered: bool
    ) -> list[envelope.EventEnvelope]:
        """The envelopes this worker should handle now (one round trip in the common case)."""
        names = [self._keys.dedupe(item.dedupe_key) for item in envelopes]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.set(name, self._holder, nx=True, ex=_PROCESSING_TTL)
                won = await pipe.execute()
            if redelivered and not all(won):
                # The broker redelivered: whoever held these died. Take over all but done ones.
                taken = [i for i, ok in enumerate(won) if not ok]
                values = await self._redis.mget([names[i] for i in taken])
                async with self._redis.pipeline(transaction=False) as pipe:
                    for index, value in zip(taken, values, strict=True):
                        if value != b"done":
                            pipe.set(names[index], self._holder, ex=_PROCESSING_TTL)
                            won[index] = True
                    await pipe.execute()
        except redis_client.REDIS_ERRORS as exc:
            if self.available:
                _LOGGER.warning(
                    "Redis unavailable: handling without dedupe", extra={"error": str(exc)}
                )
            self.available = False
            return list(envelopes)
        self.available = True
        return [item for item, ok in zip(envelopes, won, strict=True) if ok]

    async def finish(
        self,
        done: typing.Sequence[envelope.EventEnvelope],
        failed: typing.Sequence[envelope.EventEnvelope],
    ) -> None:
        """Mark handled envelopes done (batched in the background); free failed ones now."""
        self._done.extend(self._keys.dedupe(item.dedupe_key) for item in done)
        if self._done and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())
        if failed:
            try:
                await self._redis.delete(*(self._keys.dedupe(item.dedupe_key) for item in failed))
            except redis_client.REDIS_ERRORS as exc:
                _LOGGER.warning(
                    "Redis unavailable: dedupe claim not released", extra={"error": str(exc)}
                )

    async def _flush_later(self) -> None:
        await asyncio.sleep(_FLUSH_EVERY)
        await self.flush()

    async def flush(self) -> None:
        self._flusher = None
        names, self._done = self._done, []
        if not names:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.set(name, "done", ex=keys.DEDUPE_TTL)
                await pipe.execute()
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: dedupe marks not written", extra={"error": str(exc)}
            )
