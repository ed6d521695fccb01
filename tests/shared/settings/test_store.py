"""The settings store against the real mongod from the pinned wheel and real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
import typing

import pymongo
import pytest

from shared import breaker, keys
from shared.settings import documents, store
from tests import servers

if typing.TYPE_CHECKING:
    import pathlib

    import redis.asyncio as aioredis

Replica = tuple[pymongo.AsyncMongoClient[dict[str, typing.Any]], store.SettingsStore]


class Replicas:
    """Several stores over one database and one Redis, as several worker replicas have."""

    def __init__(self, mongo_url: str, redis: aioredis.Redis | None, namespace: str) -> None:
        self.mongo_url = mongo_url
        self.redis = redis
        self.namespace = namespace
        self.opened: list[Replica] = []

    async def open(self, *, subscribed: bool = True, **options: typing.Any) -> store.SettingsStore:
        client = store.connect(self.mongo_url, **options)
        replica = store.SettingsStore(
            client.get_database(self.namespace), self.redis, keys.RedisKeys(self.namespace, "main")
        )
        await replica.start()
        self.opened.append((client, replica))
        if subscribed:
            # start() waits 2 s at most for the invalidation subscription; until it is up,
            # local copies are not trusted, which the counts of local hits below rely on.
            await asyncio.wait_for(replica._changes.subscribed.wait(), 15)
        return replica

    @property
    def database(self) -> typing.Any:
        return self.opened[0][0].get_database(self.namespace)

    async def close(self) -> None:
        for client, replica in self.opened:
            await replica.close()
            await client.close()


@pytest.fixture
async def replicas(
    mongo_url: str, redis_client: aioredis.Redis, namespace: str
) -> typing.AsyncIterator[Replicas]:
    group = Replicas(mongo_url, redis_client, namespace)
    yield group
    if group.opened:
        await group.opened[0][0].drop_database(namespace)
    await group.close()


async def test_guild_settings_crud_with_defaults_and_validation(replicas: Replicas) -> None:
    settings = await replicas.open()
    fresh = await settings.guild(1)
    assert (fresh.prefix, fresh.disabled_commands, fresh.rev) == (None, (), 0)
    assert (await settings.set_prefix(1, "?")).prefix == "?"
    await settings.set_locale(1, "fr")
    await settings.set_command_enabled(1, "ban", enabled=False)
    await settings.set_channel_enabled(1, 555, enabled=False)
    current = await settings.guild(1)
    assert (current.prefix, current.locale, current.rev) == ("?", "fr", 4)
    assert current.is_disabled("ban")
    assert current.is_disabled("ping", channel_id=555)
    assert not current.is_disabled("ping", channel_id=556)
    await settings.set_command_enabled(1, "ban", enabled=True)
    assert (await settings.set_prefix(1, None)).prefix is None
    assert not (await settings.guild(1)).is_disabled("ban")
    with pytest.raises(documents.SettingsValidationError, match="prefix"):
        await settings.set_prefix(1, "x" * 33)
    with pytest.raises(documents.SettingsValidationError, match="locale"):
        await settings.set_locale(1, "French")
    user = await settings.set_user_locale(9, "de")
    assert (await settings.user(9)).locale == user.locale == "de"


@dataclasses.dataclass(frozen=True)
class MusicConfig:
    volume: int = 100
    dj_role: int | None = None
    announce: bool = True


async def test_plugin_config_is_typed_and_unknown_fields_survive_writes(
    replicas: Replicas,
) -> None:
    settings = await replicas.open()
    await settings.set_guild_plugin(2, "music", {"volume": 40})
    # A newer release (or an operator) wrote fields this one does not know.
    await replicas.database.guild_settings.update_one(
        {"_id": 2}, {"$set": {"premium_tier": 3, "plugins.music.equalizer": "bass"}}
    )
    await settings.set_prefix(2, "$")  # a write through this store
    current = await replicas.open()  # a replica with nothing cached locally
    read = await current.guild(2)
    assert read.plugin("music", MusicConfig) == MusicConfig(volume=40)
    assert read.extra["premium_tier"] == 3
    assert read.plugins["music"]["equalizer"] == "bass"
    stored = await replicas.database.guild_settings.find_one({"_id": 2})
    assert stored["premium_tier"] == 3
    await settings.set_guild_plugin(2, "music", {"volume": "loud"})
    with pytest.raises(documents.SettingsValidationError, match=r"plugins\.music\.volume"):
        (await current.guild(2)).plugin("music", MusicConfig)


async def test_concurrent_writers_on_several_replicas_lose_no_update(replicas: Replicas) -> None:
    first, second, third = [await replicas.open() for _ in range(3)]
    names = [f"cmd{i}" for i in range(30)]
    await asyncio.gather(
        *(
            replica.set_command_enabled(3, name, enabled=False)
            for index, name in enumerate(names)
            for replica in [(first, second, third)[index % 3]]
        )
    )
    for replica in (first, second, third):
        assert sorted((await replica.guild(3)).disabled_commands) == sorted(names)
    assert (await first.guild(3)).rev == 30


async def test_an_old_document_is_migrated_on_read_and_in_the_database(
    replicas: Replicas,
) -> None:
    settings = await replicas.open()
    await replicas.database.guild_settings.insert_one(
        {"_id": 4, "prefix": "%", "language": "en", "disabled": ["kick"], "legacy_flag": True}
    )
    read = await settings.guild(4)
    assert (read.prefix, read.locale, read.disabled_commands) == ("%", "en-US", ("kick",))
    assert read.extra["legacy_flag"] is True
    stored = await replicas.database.guild_settings.find_one({"_id": 4})
    assert stored["v"] == documents.GUILD_VERSION
    assert "language" not in stored
    assert "disabled" not in stored
    assert stored["disabled_commands"] == ["kick"]
    assert settings.stats.migrations == 1


async def test_a_write_on_one_replica_is_seen_by_another_that_had_it_cached(
    replicas: Replicas,
) -> None:
    writer, reader = await replicas.open(), await replicas.open()
    assert (await reader.guild(5)).prefix is None
    assert (await reader.guild(5)).prefix is None  # now held locally by the reader
    assert reader.stats.local_hits == 1
    await writer.set_prefix(5, "!!")
    assert (await reader.guild(5)).prefix == "!!"  # right after the write is acknowledged


async def test_after_warm_up_reads_cost_no_round_trip_to_mongodb(replicas: Replicas) -> None:
    settings = await replicas.open()
    await settings.set_prefix(6, "?")
    other = await replicas.open()
    for _ in range(3):
        for guild_id in (6, 7, 8):  # 7 and 8 have no document: the defaults are cached too
            await other.guild(guild_id)
    assert other.stats.mongo_reads == 2  # 6 came from Redis; 7 and 8 once each
    assert other.stats.local_hits == 6


async def test_infractions_with_case_numbers_queries_and_expiry(replicas: Replicas) -> None:
    first, second = await replicas.open(), await replicas.open()
    kinds = [documents.InfractionKind.WARN, documents.InfractionKind.TIMEOUT]
    made = await asyncio.gather(
        *(
            (first, second)[i % 2].add_infraction(
                10, 77 if i < 6 else 88, moderator_id=1, kind=kinds[i % 2], reason=f"r{i}",
                duration=dt.timedelta(seconds=-1) if i == 1 else None,
            )
            for i in range(10)
        )
    )  # fmt: skip
    assert sorted(i.case for i in made) == list(range(1, 11))
    of_77 = await first.infractions(10, 77)
    assert len(of_77) == 6
    assert [i.created_at for i in of_77] == sorted((i.created_at for i in of_77), reverse=True)
    expired = await asyncio.gather(first.expire_infractions(), second.expire_infractions())
    assert [i.reason for sweep in expired for i in sweep] == ["r1"]  # once, by one replica
    revoked = await second.revoke_infraction(10, 3)
    assert revoked is not None
    assert not revoked.active
    names = await replicas.database.infractions.index_information()
    assert {"guild_case", "guild_user_recent", "active_expiry"} <= set(names)
    await first.start()  # idempotent: creating the indexes again is harmless


async def test_mongod_stopped_mid_run_and_started_again(
    tmp_path: pathlib.Path,
    redis_client: aioredis.Redis,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = servers.MongoServer(tmp_path)
    server.start()
    group = Replicas(server.url, redis_client, namespace)
    try:
        settings = await group.open(serverSelectionTimeoutMS=500)
        await settings.set_prefix(20, "+")
        cold = await group.open(serverSelectionTimeoutMS=500)
        server.stop()
        caplog.set_level(logging.WARNING, logger="shardline.settings")
        # Cached: served as before. Never read: the defaults, said once in the log.
        assert (await settings.guild(20)).prefix == "+"
        assert (await cold.guild(20)).prefix == "+"  # the Redis copy
        assert (await cold.guild(21)).prefix is None
        assert (await cold.guild(22)).prefix is None
        assert sum("MongoDB unavailable" in r.getMessage() for r in caplog.records) == 1
        with pytest.raises(store.SettingsUnavailableError, match="try again"):
            await settings.set_prefix(20, "-")
        assert (await settings.guild(20)).prefix == "+"  # nothing half-written
        server.start()
        # The driver finds the server again on its next heartbeat: writes work within seconds.
        saved = None
        deadline = asyncio.get_running_loop().time() + 20
        while saved is None and asyncio.get_running_loop().time() < deadline:
            try:
                saved = await settings.set_prefix(20, "-")
            except store.SettingsUnavailableError:
                await asyncio.sleep(0.2)
        assert saved is not None
        assert saved.prefix == "-"
        assert (await cold.guild(20)).prefix == "-"  # the other replica sees it at once
        assert (await cold.guild(21)).rev == 0
    finally:
        await group.close()
        server.stop()


async def test_mongod_stopped_while_serving_reads_costs_no_wait_per_read(
    tmp_path: pathlib.Path, namespace: str
) -> None:
    """Reads that miss the local copy (expired) and have no Redis copy go to MongoDB; once
    its breaker opens they take the last copy at once, not 2 s of server selection each."""
    server = servers.MongoServer(tmp_path)
    server.start()
    client = store.connect(server.url)  # the production timeouts (2 s server selection)
    settings = store.SettingsStore(
        client.get_database(namespace), None, keys.RedisKeys(namespace, "main"), local_ttl=0.0
    )
    try:
        await settings.start()
        await settings.set_prefix(30, "+")
        assert (await settings.guild(30)).prefix == "+"
        server.stop()
        started = time.monotonic()
        prefixes = [(await settings.guild(30)).prefix for _ in range(20)]
        took = time.monotonic() - started
        assert prefixes == ["+"] * 20  # the last copy, every time
        assert settings.breaker.state is breaker.State.OPEN
        # Three reads find the outage (a deadline each), the other 17 cost nothing.
        assert took < breaker.FAILURES * 1.0 + 1.0, took
    finally:
        await settings.close()
        await client.close()
        server.stop()


async def test_redis_unavailable_reads_and_writes_go_to_mongodb(
    mongo_url: str, namespace: str
) -> None:
    import redis.asyncio as aioredis_module  # noqa: PLC0415 - the unreachable one only here

    unreachable = aioredis_module.Redis.from_url(
        "redis://127.0.0.1:9/0", socket_connect_timeout=0.2
    )
    group = Replicas(mongo_url, unreachable, namespace)
    try:
        settings = await group.open(subscribed=False)
        assert (await settings.set_prefix(30, "&")).prefix == "&"
        assert (await settings.guild(30)).prefix == "&"
        assert settings.stats.redis_failures > 0
    finally:
        await group.opened[0][0].drop_database(namespace)
        await group.close()
        await unreachable.aclose()
