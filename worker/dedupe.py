"""Each envelope handled once, even when a RESUME replays it or a crash redelivers it.

A key per envelope (``pool:shard:session:seq``) moves from ``processing`` to ``done``. A copy
that arrives while another is processing is skipped, unless the broker redelivered it (the
holder died): then it is taken over. One script call per message claims all its envelopes; the
``done`` marks of many messages go out together in the background, in one call.
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
# One command for all the envelopes of a message: claim each key, or take it over from a dead
# holder when the broker redelivered (never a "done" one).
_CLAIM_MANY: typing.Final = """
local won, seen = {}, {}
for i, key in ipairs(KEYS) do
  if seen[key] then
    won[i] = 0
  elseif redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[2]) then
    won[i] = 1
  elseif ARGV[2 + i] == '1' and redis.call('GET', key) ~= 'done' then
    redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
    won[i] = 1
  else
    won[i] = 0
  end
  seen[key] = true
end
return won
"""
_DONE_MANY: typing.Final = """
for _, key in ipairs(KEYS) do redis.call('SET', key, 'done', 'EX', ARGV[1]) end
return #KEYS
"""


class Deduplicator:
    def __init__(self, redis: aioredis.Redis, redis_keys: keys.RedisKeys, worker_id: str) -> None:
        self._redis = redis
        self._keys = redis_keys
        self._holder = f"processing:{worker_id}"
        self._claim_many = redis.register_script(_CLAIM_MANY)
        self._done_many = redis.register_script(_DONE_MANY)
        self._done: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self._waiting: list[tuple[list[str], bool, asyncio.Future[list[int]]]] = []
        self._claim_scheduled = False
        self._claims: set[asyncio.Task[None]] = set()
        self.available = True

    async def claim(
        self, envelopes: typing.Sequence[envelope.EventEnvelope], *, redelivered: bool
    ) -> list[envelope.EventEnvelope]:
        """The envelopes this worker should handle now (one round trip in the common case)."""
        names = [self._keys.dedupe(item.dedupe_key) for item in envelopes]
        # Messages that arrive together (up to the prefetch) share one script call.
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting.append((names, redelivered, future))
        if not self._claim_scheduled:
            self._claim_scheduled = True
            asyncio.get_running_loop().call_soon(self._claim_pending)
        try:
            won = await future
        except redis_client.REDIS_ERRORS as exc:
            if self.available:
                _LOGGER.warning(
                    "Redis unavailable: handling without dedupe", extra={"error": str(exc)}
                )
            self.available = False
            return list(envelopes)
        self.available = True
        return [item for item, ok in zip(envelopes, won, strict=True) if ok]

    def _claim_pending(self) -> None:
        self._claim_scheduled = False
        waiting, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._claim_batch(waiting))
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def _claim_batch(
        self, waiting: list[tuple[list[str], bool, asyncio.Future[list[int]]]]
    ) -> None:
        names = [name for batch, _, _ in waiting for name in batch]
        flags = ["1" if redelivered else "0" for batch, redelivered, _ in waiting for _ in batch]
        try:
            won = await self._claim_many(keys=names, args=[self._holder, _PROCESSING_TTL, *flags])
        except redis_client.REDIS_ERRORS as exc:
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException as exc:
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            raise
        offset = 0
        for batch, _, future in waiting:
            if not future.done():
                future.set_result(list(won[offset : offset + len(batch)]))
            offset += len(batch)

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
