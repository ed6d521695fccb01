"""Discord sessions in Redis, so that any successor can RESUME a shard."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import typing

from gateway import hikari_adapter
from shared import keys, redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

_LOGGER = logging.getLogger("shardline.gateway.sessions")
#: Seconds between attempts to record a new session Redis did not take; the last repeats.
START_RETRY_DELAYS: typing.Final = (0.5, 1.0, 2.0, 5.0)

# Advance the stored seq only forward and only within the same session; re-create the record
# when it is missing (Redis restarted empty), never overwrite another session's.
_CHECKPOINT: typing.Final = """
local current = redis.call('HGET', KEYS[1], 'session_id')
if current and current ~= ARGV[1] then return 0 end
if not current then
  redis.call('HSET', KEYS[1], 'session_id', ARGV[1], 'seq', ARGV[2],
             'resume_url', ARGV[4], 'shard_count', ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 2
end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if tonumber(ARGV[2]) > seq then redis.call('HSET', KEYS[1], 'seq', ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far a shard's session is safely published."""

    session_id: str
    seq: int
    resume_url: str
    shard_count: int


class SessionStore:
    """``ns:pool:session:{count:shard}`` hashes: session_id, seq, resume_url, shard_count."""

    def __init__(self, redis: aioredis.Redis, redis_keys: keys.RedisKeys) -> None:
        self._redis = redis
        self._keys = redis_keys

    async def load(self, shard_id: int, shard_count: int) -> hikari_adapter.SessionState | None:
        stored = await self._redis.hgetall(self._keys.session(shard_id, shard_count))
        if not stored:
            # Left by a version without hash tags (``shared.keys``): still resumable.
            stored = await self._redis.hgetall(self._keys.legacy_session(shard_id, shard_count))
        if not stored:
            return None
        raw = redis_client.text_map(stored)
        try:
            if int(raw["shard_count"]) != shard_count:
                # A session of another shard layout routes other guilds: useless now.
                return None
            return hikari_adapter.SessionState(
                raw["session_id"], int(raw["seq"]), raw["resume_url"]
            )
        except (KeyError, ValueError):
            _LOGGER.warning("ignoring a malformed stored session", extra={"shard": shard_id})
            return None

    async def start(
        self, shard_id: int, shard_count: int, session_id: str, resume_url: str, seq: int
    ) -> None:
        """Record a new session (after READY)."""
        key = self._keys.session(shard_id, shard_count)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "session_id": session_id,
                    "seq": seq,
                    "resume_url": resume_url,
                    "shard_count": shard_count,
                    "started_at": time.time(),
                },
            )
            pipe.expire(key, keys.SESSION_TTL)
            await pipe.execute()

    async def start_until_taken(
        self,
        shard_id: int,
        shard_count: int,
        session_id: str,
        resume_url: str,
        *,
        current: typing.Callable[[], bool],
    ) -> None:
        """Record a new session, trying again while Redis does not take it, for as long as
        ``current()`` (this gateway still runs that session on the shard).

        Without it, a READY while Redis was away left the old session's record: the new
        session's checkpoints were refused (another session's record), and a successor
        RESUMEd the old session, failed and IDENTIFYed (a review of the soak's fixes).
        """
        attempt = 0
        key = self._keys.session(shard_id, shard_count)
        while current():
            try:
                if (
                    attempt
                    and redis_client.text(await self._redis.hget(key, "session_id") or b"")
                    == session_id
                ):
                    return  # written meanwhile (a checkpoint of it): keep its seq
                await self.start(shard_id, shard_count, session_id, resume_url, 0)
            except redis_client.REDIS_ERRORS as exc:
                if attempt == 0:
                    _LOGGER.warning(
                        "new session not recorded: Redis unavailable; trying until it is",
                        extra={"shard": shard_id, "error": exc.__class__.__name__},
                    )
            else:
                return
            await asyncio.sleep(START_RETRY_DELAYS[min(attempt, len(START_RETRY_DELAYS) - 1)])
            attempt += 1

    async def checkpoint(self, marks: typing.Mapping[int, Checkpoint]) -> set[int]:
        """Advance the stored seq of several shards in one round trip; return the shards whose
        record was missing and was written whole again (Redis forgot it, or it expired)."""
        if not marks:
            return set()
        # EVAL, not a registered script's EVALSHA: a cluster pipeline cannot load a script a
        # node lacks (a fresh or promoted one), and Redis caches the text's compilation.
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard_id, mark in marks.items():
                pipe.eval(
                    _CHECKPOINT,
                    1,
                    self._keys.session(shard_id, mark.shard_count),
                    mark.session_id,
                    mark.seq,
                    keys.SESSION_TTL,
                    mark.resume_url,
                    mark.shard_count,
                )
            answers = await pipe.execute()
        return {s for s, answer in zip(marks, answers, strict=True) if int(answer) == 2}

    async def forget(self, shard_id: int, shard_count: int) -> None:
        await self._redis.delete(self._keys.session(shard_id, shard_count))
