"""MongoDB for settings: the client, the collections, upserts, migrations and whether it is up.

Every call gives up within the client's timeouts (seconds). A write that cannot be saved raises
:class:`SettingsUnavailableError`, whose text can be shown to the user; the first failure of an
outage is logged once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import typing

import pymongo
from bson import codec_options
from pymongo import errors as mongo_errors

from shared.settings import documents

if typing.TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

    from shared.settings import stats as stats_module

__all__: typing.Sequence[str] = (
    "CODEC",
    "GUILD",
    "MONGO_ERRORS",
    "USER",
    "Document",
    "Kind",
    "SettingsDatabase",
    "SettingsUnavailableError",
    "connect",
)

_LOGGER = logging.getLogger("shardline.settings")
Document = dict[str, typing.Any]
MONGO_ERRORS: typing.Final = (mongo_errors.PyMongoError,)
CODEC: typing.Final[codec_options.CodecOptions[Document]] = codec_options.CodecOptions(
    tz_aware=True, tzinfo=dt.UTC
)


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


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """What settings are about: its name in keys and invalidations, and where it is stored."""

    name: str
    collection: str
    version: int


GUILD: typing.Final = Kind("guild", "guild_settings", documents.GUILD_VERSION)
USER: typing.Final = Kind("user", "user_settings", documents.USER_VERSION)


class SettingsDatabase:
    """The settings database, and whether the last call to it succeeded."""

    def __init__(
        self, database: AsyncDatabase[Document], stats: stats_module.SettingsStats
    ) -> None:
        self._db = database
        self._stats = stats
        self._ok = True

    @property
    def ok(self) -> bool:
        return self._ok

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self._db.get_collection(name, codec_options=CODEC)

    def down(self, exc: BaseException) -> None:
        self._stats.mongo_failures += 1
        if self._ok:
            _LOGGER.warning(
                "MongoDB unavailable: serving cached or default settings; writes refused",
                extra={"error": type(exc).__name__},
            )
        self._ok = False

    def up(self) -> None:
        if not self._ok:
            _LOGGER.info("MongoDB reachable again")
        self._ok = True

    async def upsert(self, kind: Kind, entity: int, update: Document) -> Document:
        """Apply one atomic update (bumping ``rev``) and return the document after it."""
        update = dict(update)
        update.setdefault("$inc", {})["rev"] = 1
        update.setdefault("$setOnInsert", {})["v"] = kind.version
        update.setdefault("$currentDate", {})["updated_at"] = True
        try:
            doc = await self.collection(kind.collection).find_one_and_update(
                {"_id": entity}, update, upsert=True, return_document=pymongo.ReturnDocument.AFTER
            )
        except MONGO_ERRORS as exc:
            self.down(exc)
            raise SettingsUnavailableError from None
        assert doc is not None  # upserted
        self.up()
        self._stats.mongo_writes += 1
        if kind is GUILD:
            doc = await self.migrated(doc)
        return doc

    async def migrated(self, doc: Document) -> Document:
        """Migrate an old guild document forward, in memory and (best effort) in MongoDB."""
        new, changed = documents.migrate_guild(doc)
        if not changed:
            return doc
        self._stats.migrations += 1
        update: Document = {"$set": {k: v for k, v in new.items() if doc.get(k) != v}}
        removed = [k for k in doc if k not in new]
        if removed:
            update["$unset"] = dict.fromkeys(removed, "")
        update["$set"].pop("rev", None)
        update["$inc"] = {"rev": 1}
        # Only if nobody wrote it meanwhile (then the next read migrates their version).
        unchanged = {"_id": doc["_id"], "rev": doc.get("rev", {"$exists": False})}
        try:
            stored = await self.collection(GUILD.collection).find_one_and_update(
                unchanged,
                update,
                return_document=pymongo.ReturnDocument.AFTER,
            )
        except MONGO_ERRORS as exc:
            self.down(exc)
            return new
        return stored if stored is not None else new
