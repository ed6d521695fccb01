from __future__ import annotations

import dataclasses
import typing

import pytest
from hikari.impl import entity_factory

from playground.discord import world
from shared import keys
from shared.cache import reader, resources, writer

if typing.TYPE_CHECKING:
    import hikari
    import redis.asyncio as aioredis


class _App:
    """What hikari's entity factory needs of an app: something to attach to models."""

    rest = None
    entity_factory = None


@dataclasses.dataclass
class Cache:
    redis: aioredis.Redis
    writer: writer.CacheWriter
    reader: reader.CacheReader
    world: world.World

    async def apply(self, event: str, d: typing.Any, shard_id: int = 0) -> None:
        await self.writer.write(self.redis, [(shard_id, event, d)])


def make_cache(
    redis: aioredis.Redis,
    namespace: str,
    flags: resources.CacheResource = resources.ALL,
    *,
    bucket_bits: int | None = None,
) -> Cache:
    redis_keys = (
        keys.RedisKeys(namespace, "main")
        if bucket_bits is None
        else keys.RedisKeys(namespace, "main", bucket_bits=bucket_bits)
    )
    factory = entity_factory.EntityFactoryImpl(typing.cast("hikari.RESTAware", _App()))
    return Cache(
        redis,
        writer.CacheWriter(redis_keys, flags, shard_count=4),
        reader.CacheReader(redis, redis_keys, factory),
        world.World(),
    )


@pytest.fixture
def cache(redis_client: aioredis.Redis, namespace: str) -> Cache:
    return make_cache(redis_client, namespace)


def guild_with(cache: Cache, members: int = 2) -> dict[str, typing.Any]:
    guild = cache.world.add_guild("g", channels=2)
    guild_id = int(guild["id"])
    for index in range(members):
        cache.world.add_member(guild_id, cache.world.add_user(f"user{index}"))
    # As a bot with GUILD_PRESENCES gets it: every member of a small guild.
    return cache.world.guild_create_payload(guild_id, presences=True)
