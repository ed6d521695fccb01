"""Moderation records: warns, timeouts, kicks and bans under per-guild case numbers.

Case numbers come from one atomic counter per guild, so replicas recording at once never
share one; expiry deactivates each record exactly once, whichever replicas sweep.
"""

from __future__ import annotations

import datetime as dt
import typing

import pymongo

from shared.settings import documents, mongo

__all__: typing.Sequence[str] = ("InfractionRecords",)


class InfractionRecords:
    """The ``infractions`` collection (and its ``counters``); every call may raise
    :class:`~shared.settings.mongo.SettingsUnavailableError`."""

    def __init__(self, database: mongo.SettingsDatabase) -> None:
        self._database = database

    async def create_indexes(self) -> None:
        """Raises one of ``MONGO_ERRORS`` when MongoDB is away."""
        infractions = self._database.collection("infractions")
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
            counter = await self._database.collection("counters").find_one_and_update(
                {"_id": f"infraction-case:{guild_id}"},
                {"$inc": {"n": 1}},
                upsert=True,
                return_document=pymongo.ReturnDocument.AFTER,
            )
            assert counter is not None  # upserted
            doc: mongo.Document = {
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
            await self._database.collection("infractions").insert_one(doc)
        except mongo.MONGO_ERRORS as exc:
            self._database.down(exc)
            raise mongo.SettingsUnavailableError from None
        self._database.up()
        return documents.Infraction.from_document(doc)

    async def infractions(
        self, guild_id: int, user_id: int | None = None, *, limit: int = 25
    ) -> list[documents.Infraction]:
        """Newest first."""
        query: mongo.Document = {"guild_id": guild_id}
        if user_id is not None:
            query["user_id"] = user_id
        try:
            cursor = self._database.collection("infractions").find(query).sort("created_at", -1)
            found = await cursor.limit(limit).to_list(limit)
        except mongo.MONGO_ERRORS as exc:
            self._database.down(exc)
            raise mongo.SettingsUnavailableError from None
        return [documents.Infraction.from_document(doc) for doc in found]

    async def revoke_infraction(self, guild_id: int, case: int) -> documents.Infraction | None:
        try:
            doc = await self._database.collection("infractions").find_one_and_update(
                {"guild_id": guild_id, "case": case},
                {"$set": {"active": False}},
                return_document=pymongo.ReturnDocument.AFTER,
            )
        except mongo.MONGO_ERRORS as exc:
            self._database.down(exc)
            raise mongo.SettingsUnavailableError from None
        return documents.Infraction.from_document(doc) if doc is not None else None

    async def expire_infractions(
        self, now: dt.datetime | None = None
    ) -> list[documents.Infraction]:
        """Deactivate what is due, each exactly once even with several replicas sweeping."""
        moment = now or dt.datetime.now(dt.UTC)
        expired: list[documents.Infraction] = []
        try:
            while True:
                doc = await self._database.collection("infractions").find_one_and_update(
                    {"active": True, "expires_at": {"$type": "date", "$lte": moment}},
                    {"$set": {"active": False}},
                    return_document=pymongo.ReturnDocument.AFTER,
                )
                if doc is None:
                    return expired
                expired.append(documents.Infraction.from_document(doc))
        except mongo.MONGO_ERRORS as exc:
            self._database.down(exc)
            raise mongo.SettingsUnavailableError from None
