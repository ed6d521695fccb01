"""Settings in MongoDB (``pymongo.AsyncMongoClient``), read through Redis and a local copy.

Reads: the replica's own copy (a bounded LRU), then the shared copy in Redis, then MongoDB;
after warm-up a read costs no round trip at all. Writes: one atomic update operator in MongoDB
(``find_one_and_update``, so concurrent writers never lose each other's changes), then one
script in Redis that stores the new document *only if its ``rev`` is newer* than the cached one
and publishes ``{kind}:{id}:{rev}`` to every replica, which drop older local copies. A reader
that fetched an older document from MongoDB while a write was under way can therefore never
put it back over the newer one. The write returns (and the bot answers the user) after both.

A write returns once its own replica has received its invalidation back: Redis sends a
publication to every subscriber before serving anything else, so by then every replica has it
in its socket. Local copies are only trusted while the replica's subscription is up; when it
drops they are discarded and reads go to Redis until it is back. What is left: a replica whose
event loop has not yet read an invalidation already in its socket, far shorter than any path a
user's next command can take through Discord to reach it.

MongoDB unreachable: reads fall back to the last copy this replica saw, or the defaults, with
one log line per outage; writes raise :class:`SettingsUnavailableError`, whose text can be
shown to the user. A read from MongoDB has a deadline and goes through a circuit breaker
(:attr:`SettingsStore.breaker`, :mod:`shared.breaker`): once it is open, reads take the last
copy at once instead of waiting for the driver's server selection (2 s) each.

The layers live in their own modules: :mod:`~shared.settings.cache` (the two copies),
:mod:`~shared.settings.mongo` (MongoDB), :mod:`~shared.settings.invalidation` (change
notification) and :mod:`~shared.settings.infractions` (moderation records).
"""

from __future__ import annotations

import asyncio
import logging
import typing

from shared import breaker as breaker_module
from shared import clock as clock_module
from shared import lifecycle
from shared.settings import cache, documents, infractions, invalidation, mongo, stats
from shared.settings.mongo import SettingsUnavailableError, connect

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from pymongo.asynchronous.database import AsyncDatabase

    from shared import keys

__all__: typing.Sequence[str] = ("SettingsStore", "SettingsUnavailableError", "connect")

_LOGGER = logging.getLogger("shardline.settings")
_RETRY_INDEXES_EVERY: typing.Final = 5.0
#: A settings read from MongoDB (one document by ``_id``) answers well within this.
_READ_DEADLINE: typing.Final = 1.0
_READ_FAILURES: typing.Final[tuple[type[BaseException], ...]] = (
    *mongo.MONGO_ERRORS,
    breaker_module.Unavailable,
)


class SettingsStore(infractions.InfractionRecords):
    """Guild and user settings and infractions for every replica of a bot."""

    def __init__(
        self,
        database: AsyncDatabase[mongo.Document],
        redis: aioredis.Redis | None,
        redis_keys: keys.RedisKeys,
        *,
        local_ttl: float = 60.0,
        local_size: int = 50_000,
        clock: clock_module.Clock | None = None,
    ) -> None:
        self.stats = stats.SettingsStats()
        super().__init__(mongo.SettingsDatabase(database, self.stats))
        self._redis = redis
        self._local = cache.ReplicaCopies(ttl=local_ttl, size=local_size)
        self._shared = cache.RedisCopies(redis, redis_keys, self.stats)
        self._changes = invalidation.Invalidations(redis, redis_keys, self._local, self._shared)
        self._tasks: list[asyncio.Task[None]] = []
        self.indexes_ready = False
        #: In front of the MongoDB reads of the hot path (a command's settings).
        self.breaker = breaker_module.CircuitBreaker(
            "mongodb",
            clock=clock or clock_module.SystemClock(),
            deadline=_READ_DEADLINE,
            is_failure=lambda exc: isinstance(exc, mongo.MONGO_ERRORS),
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the indexes (or keep trying in the background) and follow invalidations."""
        if not await self._ensure_indexes() and not self._tasks_named("settings-indexes"):
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._indexes_later(), name="settings-indexes"
                )
            )
        if self._redis is not None and not self._tasks_named("settings-follow"):
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._changes.follow(), name="settings-follow"
                )
            )
            try:
                await asyncio.wait_for(self._changes.subscribed.wait(), timeout=2.0)
            except TimeoutError:
                _LOGGER.warning("settings invalidations not followed yet: Redis unreachable")

    def _tasks_named(self, name: str) -> bool:
        return any(task.get_name() == name and not task.done() for task in self._tasks)

    async def close(self) -> None:
        await lifecycle.cancel_and_wait(self._tasks)
        self._tasks.clear()

    async def _ensure_indexes(self) -> bool:
        try:
            await self.create_indexes()
        except mongo.MONGO_ERRORS as exc:
            self._database.down(exc)
            return False
        self.indexes_ready = True
        return True

    async def _indexes_later(self) -> None:
        ready = False
        while not ready:
            await asyncio.sleep(_RETRY_INDEXES_EVERY)
            ready = await self._ensure_indexes()
        _LOGGER.info("settings indexes created")

    @property
    def mongo_ok(self) -> bool:
        return self._database.ok

    # --- reads ------------------------------------------------------------------------------

    async def guild(self, guild_id: int) -> documents.GuildSettings:
        doc = await self._read(mongo.GUILD, guild_id)
        return documents.GuildSettings.from_document(guild_id, doc)

    async def user(self, user_id: int) -> documents.UserSettings:
        doc = await self._read(mongo.USER, user_id)
        return documents.UserSettings.from_document(user_id, doc)

    async def _read(self, kind: mongo.Kind, entity: int) -> mongo.Document | None:
        key = (kind.name, entity)
        held = self._local.held(key)
        fresh = self._local.fresh(key)
        if fresh is not None:
            self.stats.local_hits += 1
            return fresh or None
        cached = await self._shared.get(key)
        if cached is not None:
            self.stats.redis_hits += 1
            self._local.remember(key, cached)
            return cached or None
        collection = self._database.collection(kind.collection)
        try:
            doc = await self.breaker.call(lambda: collection.find_one({"_id": entity}))
        except _READ_FAILURES as exc:
            self._database.down(exc)
            # The last copy this replica saw, however old, beats the defaults.
            return held or None
        self._database.up()
        self.stats.mongo_reads += 1
        if doc is not None and kind is mongo.GUILD:
            doc = await self._database.migrated(doc)
        await self._shared.put(key, doc or {}, publish=False)
        self._local.remember(key, doc or {})
        return doc

    # --- writes -----------------------------------------------------------------------------

    async def _write(self, kind: mongo.Kind, entity: int, update: mongo.Document) -> mongo.Document:
        doc = await self._database.upsert(kind, entity, update)
        key = (kind.name, entity)
        self._local.remember(key, doc)
        await self._changes.publish(key, doc)
        return doc

    async def _write_guild(self, guild_id: int, update: mongo.Document) -> documents.GuildSettings:
        doc = await self._write(mongo.GUILD, guild_id, update)
        return documents.GuildSettings.from_document(guild_id, doc)

    async def _write_user(self, user_id: int, update: mongo.Document) -> documents.UserSettings:
        doc = await self._write(mongo.USER, user_id, update)
        return documents.UserSettings.from_document(user_id, doc)

    async def set_prefix(self, guild_id: int, prefix: str | None) -> documents.GuildSettings:
        """``None`` goes back to the bot's default prefix."""
        if prefix is None:
            return await self._write_guild(guild_id, {"$unset": {"prefix": ""}})
        return await self._write_guild(
            guild_id, {"$set": {"prefix": documents.check_prefix(prefix)}}
        )

    async def set_locale(self, guild_id: int, locale: str | None) -> documents.GuildSettings:
        return await self._write_guild(guild_id, _locale_update(locale))

    async def set_command_enabled(
        self, guild_id: int, command: str, *, enabled: bool
    ) -> documents.GuildSettings:
        name = documents.check_command_name(command)
        operator = "$pull" if enabled else "$addToSet"
        return await self._write_guild(guild_id, {operator: {"disabled_commands": name}})

    async def set_channel_enabled(
        self, guild_id: int, channel_id: int, *, enabled: bool
    ) -> documents.GuildSettings:
        if type(channel_id) is not int or channel_id <= 0:
            raise documents.SettingsValidationError("channel", "must be a channel id")
        operator = "$pull" if enabled else "$addToSet"
        return await self._write_guild(guild_id, {operator: {"disabled_channels": channel_id}})

    async def set_guild_plugin(
        self, guild_id: int, plugin: str, values: typing.Mapping[str, typing.Any]
    ) -> documents.GuildSettings:
        """Set fields of a plugin's sub-document (others, known or not, are left alone)."""
        return await self._write_guild(guild_id, {"$set": _plugin_fields(plugin, values)})

    async def set_user_locale(self, user_id: int, locale: str | None) -> documents.UserSettings:
        return await self._write_user(user_id, _locale_update(locale))

    async def set_user_plugin(
        self, user_id: int, plugin: str, values: typing.Mapping[str, typing.Any]
    ) -> documents.UserSettings:
        return await self._write_user(user_id, {"$set": _plugin_fields(plugin, values)})


def _locale_update(locale: str | None) -> mongo.Document:
    """Validated before anything is written; ``None`` goes back to the default."""
    if locale is None:
        return {"$unset": {"locale": ""}}
    return {"$set": {"locale": documents.check_locale(locale)}}


def _plugin_fields(plugin: str, values: typing.Mapping[str, typing.Any]) -> mongo.Document:
    if not plugin.isidentifier():
        raise documents.SettingsValidationError("plugin", f"{plugin!r} is not a plugin name")
    fields = {}
    for name, value in values.items():
        if not name.isidentifier():
            raise documents.SettingsValidationError(f"plugins.{plugin}", f"bad field {name!r}")
        fields[f"plugins.{plugin}.{name}"] = value
    return fields
