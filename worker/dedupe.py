"""Each envelope handled once, even when a RESUME replays it or a crash redelivers it.

A key per envelope (``pool:shard:session:seq``) moves from ``processing`` to ``done``. A copy
that arrives while another is processing is skipped, unless the broker redelivered it (the
holder died): then it is taken over. One pipelined script call per message, one write after.
"""

from __future__ import annotations

import logging
import typing

from shared import keys, redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import envelope

_LOGGER = logging.getLogger("shardline.worker.dedupe")
_PROCESSING_TTL: typing.Final = 120
_CLAIM: typing.Final = """
local value = redis.call('GET', KEYS[1])
if not value or (value ~= 'done' and ARGV[2] == '1') then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  return 1
end
return 0
"""


class Deduplicator:
    def __init__(self, redis: aioredis.Redis, redis_keys: keys.RedisKeys, worker_id: str) -> None:
        self._redis = redis
        self._keys = redis_keys
        self._holder = f"processing:{worker_id}"
        self._claim = redis.register_script(_CLAIM)
        self.available = True

    async def claim(
        self, envelopes: typing.Sequence[envelope.EventEnvelope], *, redelivered: bool
    ) -> list[envelope.EventEnvelope]:
        """The envelopes this worker should handle now."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in envelopes:
                    await self._claim(
                        keys=[self._keys.dedupe(item.dedupe_key)],
                        args=[self._holder, "1" if redelivered else "0", _PROCESSING_TTL],
                        client=pipe,
                    )
                results = await pipe.execute()
        except redis_client.REDIS_ERRORS as exc:
            if self.available:
                _LOGGER.warning(
                    "Redis unavailable: handling without dedupe", extra={"error": str(exc)}
                )
            self.available = False
            return list(envelopes)
        self.available = True
        return [item for item, won in zip(envelopes, results, strict=True) if won]

    async def finish(
        self,
        done: typing.Sequence[envelope.EventEnvelope],
        failed: typing.Sequence[envelope.EventEnvelope],
    ) -> None:
        if not done and not failed:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in done:
                    pipe.set(self._keys.dedupe(item.dedupe_key), "done", ex=keys.DEDUPE_TTL)
                for item in failed:
                    pipe.delete(self._keys.dedupe(item.dedupe_key))
                await pipe.execute()
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: dedupe marks not written", extra={"error": str(exc)}
            )
