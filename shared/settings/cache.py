"""The two copies in front of MongoDB: this replica's own and the one Redis shares.

The replica's copy is a bounded LRU, trusted only while the replica follows invalidations. The
shared copy is written by a script that stores a document *only if its ``rev`` is newer* than
the cached one (and, for a write, publishes ``{kind}:{id}:{rev}`` to every replica), so a
reader that fetched an older document while a write was under way never puts it back.
"""

from __future__ import annotations

import collections
import logging
import time
import typing

import bson
from bson import errors as bson_errors

from shared import keys, redis_client
from shared.settings import mongo

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared.settings import stats as stats_module

__all__: typing.Sequence[str] = ("Key", "RedisCopies", "ReplicaCopies")

_LOGGER = logging.getLogger("shardline.settings")
#: ``(kind name, guild or user id)``.
Key = tuple[str, int]
#: Store the document if its rev is newer than the cached one's, then tell every replica.
_STORE_IF_NEWER: typing.Final = """
local current = redis.call('GET', KEYS[1])
if current then
  local bar = string.find(current, '|', 1, true)
  if bar and tonumber(string.sub(current, 1, bar - 1)) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"""


class ReplicaCopies:
    """This replica's own copies (``{}`` for "no document"), least recently used dropped first."""

    def __init__(self, *, ttl: float, size: int) -> None:
        self._copies: collections.OrderedDict[Key, tuple[float, mongo.Document]] = (
            collections.OrderedDict()
        )
        self._ttl = ttl
        self._size = size
        #: Whether invalidations reach this replica; copies are not used while they do not.
        self.trusted = False

    def held(self, key: Key) -> mongo.Document | None:
        """The copy held, however old: better than the defaults when MongoDB is away."""
        held = self._copies.get(key)
        return held[1] if held is not None else None

    def fresh(self, key: Key) -> mongo.Document | None:
        """The copy, if it may be used now."""
        held = self._copies.get(key)
        if held is not None and self.trusted and held[0] > time.monotonic():
            self._copies.move_to_end(key)
            return held[1]
        return None

    def remember(self, key: Key, doc: mongo.Document) -> None:
        held = self._copies.get(key)
        if held is not None and held[1].get("rev", 0) > doc.get("rev", 0):
            # Concurrent writes finish in any order: never trade a newer copy for an older.
            return
        self._copies[key] = (time.monotonic() + self._ttl, doc)
        self._copies.move_to_end(key)
        while len(self._copies) > self._size:
            self._copies.popitem(last=False)

    def drop_older(self, key: Key, rev: int) -> None:
        held = self._copies.get(key)
        if held is not None and held[1].get("rev", 0) < rev:
            del self._copies[key]

    def clear(self) -> None:
        self._copies.clear()


class RedisCopies:
    """The copies every replica shares, in Redis (none at all without Redis)."""

    def __init__(
        self,
        redis: aioredis.Redis | None,
        redis_keys: keys.RedisKeys,
        stats: stats_module.SettingsStats,
    ) -> None:
        self._redis = redis
        self._keys = redis_keys
        self._stats = stats
        self._store_if_newer = redis.register_script(_STORE_IF_NEWER) if redis else None
        #: What writes could not store while Redis was away, pushed again when it is back.
        self._unsynced: dict[Key, tuple[int, bytes]] = {}
        self._ok = True

    async def get(self, key: Key) -> mongo.Document | None:
        if self._redis is None:
            return None
        kind_name, entity = key
        try:
            raw = await self._redis.get(self._keys.settings(kind_name, entity))
        except redis_client.REDIS_ERRORS as exc:
            self._down(exc)
            return None
        self._ok = True
        if raw is None:
            return None
        _, _, blob = typing.cast("bytes", raw).partition(b"|")
        try:
            return bson.decode(blob, codec_options=mongo.CODEC)
        except bson_errors.BSONError:
            return None

    async def put(self, key: Key, doc: mongo.Document, *, publish: bool) -> None:
        """Store ``doc`` unless a newer one is; ``publish`` also tells every replica."""
        if self._store_if_newer is None:
            return
        kind_name, entity = key
        rev = int(doc.get("rev", 0))
        blob = bson.encode(doc)
        try:
            await self._store_if_newer(
                keys=[self._keys.settings(kind_name, entity)],
                args=[
                    rev,
                    blob,
                    keys.SETTINGS_CACHE_TTL,
                    self._keys.settings_channel() if publish else "",
                    f"{kind_name}:{entity}:{rev}",
                ],
            )
        except redis_client.REDIS_ERRORS as exc:
            self._down(exc)
            if publish:
                self._unsynced[key] = (rev, blob)
            return
        self._unsynced.pop(key, None)

    async def repair(self) -> None:
        """Push the copies that writes could not store while Redis was away."""
        for key, (_, blob) in list(self._unsynced.items()):
            await self.put(key, bson.decode(blob, codec_options=mongo.CODEC), publish=True)

    def _down(self, exc: BaseException) -> None:
        self._stats.redis_failures += 1
        if self._ok:
            _LOGGER.warning(
                "Redis unavailable: settings read from MongoDB", extra={"error": str(exc)}
            )
        self._ok = False
