"""The member, user and channel-index bucket layout a pool's cache was written with.

Members, users and the channel index live in ``2**bucket_bits`` hashes (``shared.keys``),
sized by ``CACHE_MEMBERS``. A process computing another layout than the one the cache holds
would find none of those entries (and write where no reader looks), so the first process of a
pool records its layout and every later one compares: a mismatch stops it at start-up with
what to do. Changing ``CACHE_MEMBERS`` to another layout means emptying the pool's cache
first (``docs/benchmarks.md``, "Cache memory at both ends").
"""

from __future__ import annotations

import logging
import typing

import redis.exceptions

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys

_LOGGER = logging.getLogger("shardline.cache")


class LayoutMismatchError(RuntimeError):
    """The cache holds another bucket layout than this process's configuration gives."""

    def __init__(self, recorded: int, configured: int) -> None:
        super().__init__(
            f"the cache's member and user buckets use {recorded} bits, this process's "
            f"CACHE_MEMBERS gives {configured}: set CACHE_MEMBERS like the pool's other "
            f"processes, or stop the pool and delete its cache to change the layout"
        )
        self.recorded = recorded
        self.configured = configured


async def claim(client: aioredis.Redis | typing.Any, redis_keys: keys.RedisKeys) -> bool:
    """Record ``redis_keys``' layout if none is, else check it is the recorded one.

    Returns False when Redis could not answer (the check is skipped, and said so in the log:
    the process runs, as it does through any Redis outage); raises
    :class:`LayoutMismatchError` on a mismatch."""
    bits = redis_keys.bucket_bits
    try:
        recorded = await client.set(redis_keys.cache_layout(), str(bits), nx=True, get=True)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        _LOGGER.warning("cache layout not checked, Redis did not answer: %s", type(exc).__name__)
        return False
    if recorded is not None and int(recorded) != bits:
        raise LayoutMismatchError(int(recorded), bits)
    return True
