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
shown to the user. Every MongoDB call gives up within the client's timeouts (seconds).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
import time
import typing

import bson
import pymongo
from bson import codec_options
from bson import errors as bson_errors
from pymongo import errors as mongo_errors

from shared import keys, lifecycle, pubsub, redis_client
from shared.settings import documents

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

__all__: typing.Sequence[str] = ("SettingsStore", "SettingsUnavailableError", "connect")

_LOGGER = logging.getLogger("shardline.settings")
Document = dict[str, typing.Any]
MONGO_ERRORS: typing.Final = (mongo_errors.PyMongoError,)
_CODEC: typing.Final[codec_options.CodecOptions[Document]] = codec_options.CodecOptions(
    tz_aware=True, tzinfo=dt.UTC
)
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
_RETRY_INDEXES_EVERY: typing.Final = 5.0
#: How long a write waits for its own invalidation to come back before it answers anyway.
_ECHO_TIMEOUT: typing.Final = 0.5


class SettingsUnavailableError(Exception):
    """A write could not be saved; ``str(error)`` is fit to show the user."""

    def __init__(self) -> None:
        super().__init__(
            "Settings can't be saved right now: the database is unreachable. "
            "Nothing was changed; please try again in a minute."
        )


def connect(url: str, **options: typing.Any) -> pymongo.AsyncMongoClient[Document]:
    """A client that fails fast (seconds, never minutes) when MongoDB is away."""
    settings: dict[str, typing.Any] = {
        "tz_aware": True,
        "serverSelectionTimeoutMS": 2000,
        "connectTimeoutMS": 2000,
        "socketTimeoutMS": 5000,
        "appname": "shardline",
    }
    settings.update(options)
    return pymongo.AsyncMongoClient(url, **settings)


@dataclasses.dataclass(slots=True)
class SettingsStats:
    local_hits: int = 0
    redis_hits: int = 0
    mongo_reads: int = 0
    mongo_writes: int = 0
    mongo_failures: int = 0
    redis_failures: int = 0
    migrations: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    collection: str
    version: int


_GUILD: typing.Final = _Kind("guild", "guild_settings", documents.GUILD_VERSION)
_USER: typing.Final = _Kind("user", "user_settings", documents.USER_VERSION)


class SettingsStore:
    """Guild and user settings and infractions for every replica of a bot."""

    def __init__(
        self,
        database: AsyncDatabase[Document],
        redis: aioredis.Redis | None,
        redis_keys: keys.RedisKeys,
        *,
        local_ttl: float = 60.0,
        local_size: int = 50_000,
    ) -> None:
        self._db = database
        self._redis = redis
        self._keys = redis_keys
        self._local: collections.OrderedDict[tuple[str, int], tuple[float, Document]] = (
            collections.OrderedDict()
        )
        self._local_ttl = local_ttl
        self._local_size = local_size
        self._local_ok = False
        self._store_if_newer = redis.register_script(_STORE_IF_NEWER) if redis else None
        self._unsynced: dict[tuple[str, int], tuple[int, bytes]] = {}
        self._echoes: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._mongo_ok = True
        self._redis_ok = True
        self.indexes_ready = False
        self.stats = SettingsStats()

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
                asyncio.get_running_loop().create_task(self._follow(), name="settings-follow")
            )
            try:
                await asyncio.wait_for(self._subscribed.wait(), timeout=2.0)
            except TimeoutError:
                _LOGGER.warning("settings invalidations not followed yet: Redis unreachable")

    def _tasks_named(self, name: str) -> bool:
        return any(task.get_name() == name and not task.done() for task in self._tasks)

    async def close(self) -> None:
        await lifecycle.cancel_and_wait(self._tasks)
        self._tasks.clear()

    async def _ensure_indexes(self) -> bool:
        try:
            infractions = self._collection("infractions")
            await infractions.create_index(
                [("guild_id", 1), ("case", 1)], unique=True, name="guild_case"
            )
            await infractions.create_index(
                [("guild_id", 1), ("user_id", 1), ("created_at", -1)], name="guild_user_recent"
            )
            await infractions.create_index(
                [("expires_at", 1)],
                name="active_expiry",
                partialFilterExpression={"active": True, "expires_at": {"$type": "date"}},
            )
        except MONGO_ERRORS as exc:
            self._mongo_down(exc)
            return False
        self.indexes_ready = True
        return True

    async def _indexes_later(self) -> None:
        ready = False
        while not ready:
            await asyncio.sleep(_RETRY_INDEXES_EVERY)
            ready = await self._ensure_indexes()
        _LOGGER.info("settings indexes created")

    async def _follow(self) -> None:
        """Drop local copies other replicas made stale; trust none while not subscribed."""
        assert self._redis is not None
        await pubsub.follow(
            self._redis,
            self._keys.settings_channel(),
            self._invalidate,
            on_up=self._subscription_up,
            on_down=self._subscription_down,
        )

    async def _subscription_up(self) -> None:
        self._local.clear()  # whatever was missed while away
        self._local_ok = True
        self._subscribed.set()
        await self._repair()

    def _subscription_down(self, exc: BaseException | None) -> None:
        if exc is not None and self._local_ok:
            _LOGGER.warning(
                "settings invalidations lost: reading through Redis and MongoDB",
                extra={"error": str(exc)},
            )
        self._local_ok = False
        self._subscribed.clear()
        self._local.clear()

    def _invalidate(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        try:
            kind, entity, rev = text.rsplit(":", 2)
            key = (kind, int(entity))
            newer = int(rev)
        except ValueError:
            return
        held = self._local.get(key)
        if held is not None and held[1].get("rev", 0) < newer:
            del self._local[key]
        echo = self._echoes.pop(text, None)
        if echo is not None and not echo.done():
            echo.set_result(None)

    # --- reads ------------------------------------------------------------------------------

    async def guild(self, guild_id: int) -> documents.GuildSettings:
        doc = await self._read(_GUILD, guild_id)
        return documents.GuildSettings.from_document(guild_id, doc)

    async def user(self, user_id: int) -> documents.UserSettings:
        doc = await self._read(_USER, user_id)
        return documents.UserSettings.from_document(user_id, doc)

    async def _read(self, kind: _Kind, entity: int) -> Document | None:
        key = (kind.name, entity)
        held = self._local.get(key)
        if held is not None and self._local_ok and held[0] > time.monotonic():
            self._local.move_to_end(key)
            self.stats.local_hits += 1
            return held[1] or None
        cached = await self._from_redis(kind, entity)
        if cached is not None:
            self.stats.redis_hits += 1
            self._remember(key, cached)
            return cached or None
        try:
            doc = await self._collection(kind.collection).find_one({"_id": entity})
        except MONGO_ERRORS as exc:
            self._mongo_down(exc)
            # The last copy this replica saw, however old, beats the defaults.
            return (held[1] or None) if held is not None else None
        self._mongo_up()
        self.stats.mongo_reads += 1
        if doc is not None and kind is _GUILD:
            doc = await self._migrated(doc)
        await self._to_redis(kind, entity, doc or {}, publish=False)
        self._remember(key, doc or {})
        return doc

    async def _migrated(self, doc: Document) -> Document:
        """Migrate an old guild document forward, in memory and (best effort) in MongoDB."""
        new, changed = documents.migrate_guild(doc)
        if not changed:
            return doc
        self.stats.migrations += 1
        update: Document = {"$set": {k: v for k, v in new.items() if doc.get(k) != v}}
        removed = [k for k in doc if k not in new]
        if removed:
            update["$unset"] = dict.fromkeys(removed, "")
        update["$set"].pop("rev", None)
        update["$inc"] = {"rev": 1}
        # Only if nobody wrote it meanwhile (then the next read migrates their version).
        unchanged = {"_id": doc["_id"], "rev": doc.get("rev", {"$exists": False})}
        try:
            stored = await self._collection(_GUILD.collection).find_one_and_update(
                unchanged,
                update,
                return_document=pymongo.ReturnDocument.AFTER,
            )
        except MONGO_ERRORS as exc:
            self._mongo_down(exc)
            return new
        return stored if stored is not None else new

    def _remember(self, key: tuple[str, int], doc: Document) -> None:
        held = self._local.get(key)
        if held is not None and held[1].get("rev", 0) > doc.get("rev", 0):
            # Concurrent writes finish in any order: never trade a newer copy for an older.
            return
        self._local[key] = (time.monotonic() + self._local_ttl, doc)
        self._local.move_to_end(key)
        while len(self._local) > self._local_size:
            self._local.popitem(last=False)

    async def _from_redis(self, kind: _Kind, entity: int) -> Document | None:
        if self._redis is None:
            return None
        try:
            raw = await self._redis.get(self._keys.settings(kind.name, entity))
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)
            return None
        self._redis_ok = True
        if raw is None:
            return None
        _, _, blob = typing.cast("bytes", raw).partition(b"|")
        try:
            return bson.decode(blob, codec_options=_CODEC)
        except bson_errors.BSONError:
            return None

    async def _to_redis(self, kind: _Kind, entity: int, doc: Document, *, publish: bool) -> None:
        if self._store_if_newer is None:
            return
        rev = int(doc.get("rev", 0))
        blob = bson.encode(doc)
        key = (kind.name, entity)
        try:
            await self._store_if_newer(
                keys=[self._keys.settings(kind.name, entity)],
                args=[
                    rev,
                    blob,
                    keys.SETTINGS_CACHE_TTL,
                    self._keys.settings_channel() if publish else "",
                    f"{kind.name}:{entity}:{rev}",
                ],
            )
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)
            if publish:
                self._unsynced[key] = (rev, blob)
            return
        self._unsynced.pop(key, None)

    async def _repair(self) -> None:
        """Push the copies that writes could not store while Redis was away."""
        for (kind_name, entity), (_, blob) in list(self._unsynced.items()):
            kind = _GUILD if kind_name == _GUILD.name else _USER
            await self._to_redis(
                kind, entity, bson.decode(blob, codec_options=_CODEC), publish=True
            )

    # --- writes -----------------------------------------------------------------------------

    async def _write(self, kind: _Kind, entity: int, update: Document) -> Document:
        update = dict(update)
        update.setdefault("$inc", {})["rev"] = 1
        update.setdefault("$setOnInsert", {})["v"] = kind.version
        update.setdefault("$currentDate", {})["updated_at"] = True
        try:
            doc = await self._collection(kind.collection).find_one_and_update(
                {"_id": entity}, update, upsert=True, return_document=pymongo.ReturnDocument.AFTER
            )
        except MONGO_ERRORS as exc:
            self._mongo_down(exc)
            raise SettingsUnavailableError from None
        assert doc is not None  # upserted
        self._mongo_up()
        self.stats.mongo_writes += 1
        if kind is _GUILD:
            doc = await self._migrated(doc)
        self._remember((kind.name, entity), doc)
        await self._publish(kind, entity, doc)
        return doc

    async def _publish(self, kind: _Kind, entity: int, doc: Document) -> None:
        """Store the new copy and return once Redis has sent the invalidation to every
        replica: this replica's own subscription receiving it proves that (Redis writes a
        publication to all subscribers before it serves anything else)."""
        message = f"{kind.name}:{entity}:{int(doc.get('rev', 0))}"
        echo = None
        if self._local_ok:
            echo = self._echoes[message] = asyncio.get_running_loop().create_future()
        try:
            await self._to_redis(kind, entity, doc, publish=True)
            if echo is not None:
                await asyncio.wait_for(echo, timeout=_ECHO_TIMEOUT)
        except TimeoutError:
            _LOGGER.warning("settings invalidation not echoed in time", extra={"what": message})
        finally:
            self._echoes.pop(message, None)

    async def set_prefix(self, guild_id: int, prefix: str | None) -> documents.GuildSettings:
        """``None`` goes back to the bot's default prefix."""
        if prefix is None:
            update: Document = {"$unset": {"prefix": ""}}
        else:
            update = {"$set": {"prefix": documents.check_prefix(prefix)}}
        return documents.GuildSettings.from_document(
            guild_id, await self._write(_GUILD, guild_id, update)
        )

    async def set_locale(self, guild_id: int, locale: str | None) -> documents.GuildSettings:
        if locale is None:
            update: Document = {"$unset": {"locale": ""}}
        else:
            update = {"$set": {"locale": documents.check_locale(locale)}}
        return documents.GuildSettings.from_document(
            guild_id, await self._write(_GUILD, guild_id, update)
        )

    async def set_command_enabled(
        self, guild_id: int, command: str, *, enabled: bool
    ) -> documents.GuildSettings:
        name = documents.check_command_name(command)
        operator = "$pull" if enabled else "$addToSet"
        return documents.GuildSettings.from_document(
            guild_id, await self._write(_GUILD, guild_id, {operator: {"disabled_commands": name}})
        )

    async def set_channel_enabled(
        self, guild_id: int, channel_id: int, *, enabled: bool
    ) -> documents.GuildSettings:
        if type(channel_id) is not int or channel_id <= 0:
            raise documents.SettingsValidationError("channel", "must be a channel id")
        operator = "$pull" if enabled else "$addToSet"
        update = {operator: {"disabled_channels": channel_id}}
        return documents.GuildSettings.from_document(
            guild_id, await self._write(_GUILD, guild_id, update)
        )

    async def set_guild_plugin(
        self, guild_id: int, plugin: str, values: typing.Mapping[str, typing.Any]
    ) -> documents.GuildSettings:
        """Set fields of a plugin's sub-document (others, known or not, are left alone)."""
        update = {"$set": _plugin_fields(plugin, values)}
        return documents.GuildSettings.from_document(
            guild_id, await self._write(_GUILD, guild_id, update)
        )

    async def set_user_locale(self, user_id: int, locale: str | None) -> documents.UserSettings:
        if locale is None:
            update: Document = {"$unset": {"locale": ""}}
        else:
            update = {"$set": {"locale": documents.check_locale(locale)}}
        return documents.UserSettings.from_document(
            user_id, await self._write(_USER, user_id, update)
        )

    async def set_user_plugin(
        self, user_id: int, plugin: str, values: typing.Mapping[str, typing.Any]
    ) -> documents.UserSettings:
        update = {"$set": _plugin_fields(plugin, values)}
        return documents.UserSettings.from_document(
            user_id, await self._write(_USER, user_id, update)
        )

    # --- infractions ------------------------------------------------------------------------

    async def add_infraction(
        self,
        guild_id: int,
        user_id: int,
        *,
        moderator_id: int,
        kind: documents.InfractionKind | str,
        reason: str,
        duration: dt.timedelta | None = None,
    ) -> documents.Infraction:
        """Record a warn/timeout/kick/ban under the guild's next case number."""
        now = dt.datetime.now(dt.UTC)
        try:
            counter = await self._collection("counters").find_one_and_update(
                {"_id": f"infraction-case:{guild_id}"},
                {"$inc": {"n": 1}},
                upsert=True,
                return_document=pymongo.ReturnDocument.AFTER,
            )
            assert counter is not None  # upserted
            doc: Document = {
                "guild_id": guild_id,
                "case": counter["n"],
                "user_id": user_id,
                "moderator_id": moderator_id,
                "kind": str(documents.InfractionKind(kind)),
                "reason": reason[:1024],
                "created_at": now,
                "expires_at": now + duration if duration is not None else None,
                "active": True,
                "v": 1,
            }
            await self._collection("infractions").insert_one(doc)
        except MONGO_ERRORS as exc:
            self._mongo_down(exc)
            raise SettingsUnavailableError from None
        self._mongo_up()
        return documents.Infraction.from_document(doc)

    async def infractions(
        self, guild_id: int, user_id: int | None = None, *, limit: int = 25
    ) -> list[documents.Infraction]:
        """Newest first."""
        query: Document = {"guild_id": guild_id}
        if user_id is not None:
            query["user_id"] = user_id
        try:
            cursor = self._collection("infractions").find(query).sort("created_at", -1)
            found = await cursor.limit(limit).to_list(limit)
        except MONGO_ERRORS as exc:
            self._mongo_down(exc)
            raise SettingsUnavailableError from None
        return [documents.Infraction.from_document(doc) for doc in found]

    async def revoke_infraction(self, guild_id: int, case: int) -> documents.Infraction | None:
        try:
            doc = await self._collection("infractions").find_one_and_update(
                {"guild_id": guild_id, "case": case},
                {"$set": {"active": False}},
                return_document=pymongo.ReturnDocument.AFTER,
            )
        except MONGO_ERRORS as exc:
            self._mongo_down(exc)
            raise SettingsUnavailableError from None
        return documents.Infraction.from_document(doc) if doc is not None else None

    async def expire_infractions(
        self, now: dt.datetime | None = None
    ) -> list[documents.Infraction]:
        """Deactivate what is due, each exactly once even with several replicas sweeping."""
        moment = now or dt.datetime.now(dt.UTC)
        expired: list[documents.Infraction] = []
        try:
            while True:
                doc = await self._collection("infractions").find_one_and_update(
                    {"active": True, "expires_at": {"$type": "date", "$lte": moment}},
                    {"$set": {"active": False}},
                    return_document=pymongo.ReturnDocument.AFTER,
                )
                if doc is None:
                    return expired
                expired.append(documents.Infraction.from_document(doc))
        except MONGO_ERRORS as exc:
            self._mongo_down(exc)
            raise SettingsUnavailableError from None

    # --- health -----------------------------------------------------------------------------

    def _collection(self, name: str) -> AsyncCollection[Document]:
        return self._db.get_collection(name, codec_options=_CODEC)

    def _mongo_down(self, exc: BaseException) -> None:
        self.stats.mongo_failures += 1
        if self._mongo_ok:
            _LOGGER.warning(
                "MongoDB unavailable: serving cached or default settings; writes refused",
                extra={"error": type(exc).__name__},
            )
        self._mongo_ok = False

    def _mongo_up(self) -> None:
        if not self._mongo_ok:
            _LOGGER.info("MongoDB reachable again")
        self._mongo_ok = True

    def _redis_down(self, exc: BaseException) -> None:
        self.stats.redis_failures += 1
        if self._redis_ok:
            _LOGGER.warning(
                "Redis unavailable: settings read from MongoDB", extra={"error": str(exc)}
            )
        self._redis_ok = False

    @property
    def mongo_ok(self) -> bool:
        return self._mongo_ok


def _plugin_fields(plugin: str, values: typing.Mapping[str, typing.Any]) -> Document:
    if not plugin.isidentifier():
        raise documents.SettingsValidationError("plugin", f"{plugin!r} is not a plugin name")
    fields = {}
    for name, value in values.items():
        if not name.isidentifier():
            raise documents.SettingsValidationError(f"plugins.{plugin}", f"bad field {name!r}")
        fields[f"plugins.{plugin}.{name}"] = value
    return fields
