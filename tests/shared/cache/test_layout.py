"""The member, user and channel-index buckets, sized to the population (``shared.keys``), and
the record that keeps every process of a pool on one layout (``shared.cache.layout``)."""

from __future__ import annotations

import collections
import math
import random
import typing

import pytest
import redis.asyncio

from shared import keys
from shared.cache import codec, layout, snapshot
from tests import servers
from tests.shared.cache.conftest import Cache, guild_with, make_cache

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

#: Redis' default ``hash-max-listpack-entries``: a bucket with more is hashtable-encoded.
LISTPACK_ENTRIES = 128


def snowflakes(rng: random.Random, count: int) -> list[int]:
    """Ids shaped like Discord's: milliseconds since 2015 over 22 bits of worker and sequence,
    from a few workers and a low sequence (their low bits are far from uniform)."""
    return [
        (rng.randrange(10**11, 6 * 10**11) << 22) | (rng.randrange(4) << 17) | rng.randrange(8)
        for _ in range(count)
    ]


@pytest.mark.parametrize("members", [20_000, 200_000, 2_000_000, 20_000_000])
def test_buckets_hold_about_the_fill_at_every_population(members: int) -> None:
    bits = keys.cache_bucket_bits(members)
    assert keys.CACHE_BUCKET_FILL / 2 < members / 2**bits <= keys.CACHE_BUCKET_FILL


def test_the_bits_grow_with_the_population_and_stay_bounded() -> None:
    assert keys.cache_bucket_bits(1) == keys.cache_bucket_bits(100)  # the minimum
    assert keys.cache_bucket_bits(20_000) == 9
    assert keys.cache_bucket_bits(200_000) == 12
    assert keys.cache_bucket_bits(2_000_000) == 15
    assert keys.cache_bucket_bits(20_000_000) == 19
    assert keys.cache_bucket_bits(10**15) == keys.cache_bucket_bits(10**16)  # the maximum
    with pytest.raises(ValueError, match="bucket_bits"):
        keys.RedisKeys("ns", "main", bucket_bits=64)


def poisson_above(mean: float, limit: int) -> float:
    """P(X > limit) for X ~ Poisson(mean)."""
    term = total = math.exp(-mean)
    for k in range(1, limit + 1):
        term *= mean / k
        total += term
    return 1.0 - total


@pytest.mark.parametrize("members", [2_000_000, 20_000_000])
def test_no_bucket_outgrows_the_listpack_at_millions(members: int) -> None:
    # Computed, as 20 million ids take too long to bucket here: entries spread as Poisson
    # variables of the mean fill (the hashing's uniformity is checked on real ids below).
    # Expected buckets above the limit, at the configured population and at 1.25 times it.
    bits = keys.cache_bucket_bits(members)
    for population in (members, members * 1.25):
        above = 2**bits * poisson_above(population / 2**bits, LISTPACK_ENTRIES)
        assert above < 0.01, (population, above)


def test_member_and_user_buckets_of_real_ids_stay_listpacks() -> None:
    # 200,000 members at their sized layout fill buckets as 2 million do at theirs (the
    # same mean), in a tenth of the time.
    rng = random.Random(3)
    members = 200_000
    redis_keys = keys.RedisKeys("ns", "main", bucket_bits=keys.cache_bucket_bits(members))
    guilds = snowflakes(rng, members // 200)
    users = snowflakes(rng, members)
    member_fill = collections.Counter(
        redis_keys.member_bucket(guilds[i // 200], user) for i, user in enumerate(users)
    )
    user_fill = collections.Counter(redis_keys.user_bucket(user) for user in users)
    assert len(member_fill) == len(user_fill) == 2**redis_keys.bucket_bits  # every one used
    assert max(member_fill.values()) <= LISTPACK_ENTRIES
    assert max(user_fill.values()) <= LISTPACK_ENTRIES


def test_the_channel_index_has_fewer_buckets() -> None:
    redis_keys = keys.RedisKeys("ns", "main", bucket_bits=12)
    rng = random.Random(5)
    channel_buckets = {redis_keys.channel_guild_bucket(c) for c in snowflakes(rng, 50_000)}
    assert len(channel_buckets) == 2 ** (12 - 3)


def test_layouts_differ_only_in_the_buckets() -> None:
    small = keys.RedisKeys("ns", "main", bucket_bits=9)
    large = keys.RedisKeys("ns", "main", bucket_bits=19)
    assert small.guild(1) == large.guild(1)
    assert small.cache_layout() == large.cache_layout()
    buckets = {small.user_bucket(u) for u in range(10**17, 10**17 + 10**6, 997)}
    assert len(buckets) == 2**9
    assert max(int(b.rsplit(":", 1)[1]) for b in buckets) == 2**9 - 1


async def test_a_small_layout_caches_and_answers_members(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    # Written and read (models, permissions) through the smallest layout, where every
    # guild's members share few buckets.
    cache = make_cache(redis_client, namespace, bucket_bits=4)
    small = cache.reader.keys
    payload = guild_with(cache, members=40)
    guild_id = int(payload["id"])
    await cache.apply("GUILD_CREATE", payload)
    for member in payload["members"]:
        user_id = int(member["user"]["id"])
        found = await cache.reader.get_member(guild_id, user_id)
        assert found is not None
        assert found.username == member["user"]["username"]
    user_ids = [int(m["user"]["id"]) for m in payload["members"]]
    channel_id = int(payload["channels"][0]["id"])
    assert await cache.reader.member_permissions(guild_id, user_ids[0], channel_id) is not None
    assert len({small.member_bucket(guild_id, u) for u in user_ids}) <= 2**4


async def test_a_small_layout_answers_snapshots(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    cache = make_cache(redis_client, namespace, bucket_bits=4)
    payload = guild_with(cache, members=40)
    guild_id = int(payload["id"])
    await cache.apply("GUILD_CREATE", payload)
    user_ids = [int(m["user"]["id"]) for m in payload["members"]]
    [snap] = await cache.reader.snapshots(
        [snapshot.SnapshotRequest(guild_id=guild_id, user_ids=user_ids)]
    )
    assert set(snap.members) == set(snap.users) == set(user_ids)


async def test_the_first_process_records_the_layout_and_others_must_match(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    sized = keys.RedisKeys(namespace, "main", bucket_bits=keys.cache_bucket_bits(20_000))
    assert await layout.claim(redis_client, sized)
    assert await redis_client.get(sized.cache_layout()) == b"9"
    assert await layout.claim(redis_client, sized)  # the same layout: welcome
    other = keys.RedisKeys(namespace, "main", bucket_bits=keys.cache_bucket_bits(2_000_000))
    with pytest.raises(layout.LayoutMismatchError) as refused:
        await layout.claim(redis_client, other)
    assert (refused.value.recorded, refused.value.configured) == (9, 15)
    assert "CACHE_MEMBERS" in str(refused.value)
    assert await redis_client.get(sized.cache_layout()) == b"9"  # untouched


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 127, 128, 129, 300, 2327])
def test_pieces_fit_the_listpack_and_join_back(length: int) -> None:
    value = bytes(i % 251 for i in range(length))
    stored = codec.pieces(b"f" * 16, value)
    assert all(len(piece) <= codec.PIECE for piece in stored.values())
    assert all(len(field) <= codec.PIECE for field in stored)
    assert len(stored) <= codec.MAX_PIECES
    found = [stored.get(f) for f in codec.piece_fields(b"f" * 16, codec.MAX_PIECES)]
    assert codec.joined(found) == (value, True)
    if len(stored) > codec.FIRST_PIECES:
        assert codec.joined(found[: codec.FIRST_PIECES]) == (
            value[: codec.FIRST_PIECES * codec.PIECE],
            False,
        )


def many_roles(cache_world: typing.Any, guild: dict[str, typing.Any], count: int) -> list[str]:
    role_ids = []
    for index in range(count):
        role_id = str(cache_world.snowflakes.next())
        guild["roles"].append(
            {
                "id": role_id, "name": f"r{index}", "color": 0, "hoist": False, "icon": None,
                "unicode_emoji": None, "position": index + 1, "permissions": str(1 << index),
                "managed": False, "mentionable": False, "flags": 0,
            }
        )  # fmt: skip
        role_ids.append(role_id)
    return role_ids


async def long_member(cache: Cache) -> tuple[int, int, list[str], typing.Any]:
    """A member with 40 roles (336 bytes packed) of a user with long names, cached."""
    guild = cache.world.add_guild("g", channels=1)
    guild_id = int(guild["id"])
    role_ids = many_roles(cache.world, guild, 40)
    long_user = cache.world.add_user("u" * 32)
    long_user["global_name"] = "g" * 32
    long_user["avatar"] = "a_" + "0123456789abcdef" * 2
    member = cache.world.add_member(guild_id, long_user)
    member["roles"] = role_ids
    member["nick"] = "n" * 32
    user_id = int(long_user["id"])
    payload = cache.world.guild_create_payload(guild_id, presences=True)
    await cache.apply("GUILD_CREATE", payload)
    return guild_id, user_id, role_ids, payload


async def test_long_members_and_users_are_read_whole_by_snapshots(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    cache = make_cache(redis_client, namespace, bucket_bits=4)
    guild_id, user_id, role_ids, _ = await long_member(cache)
    [snap] = await cache.reader.snapshots(
        [snapshot.SnapshotRequest(guild_id=guild_id, user_ids=[user_id])]
    )
    assert codec.member_role_ids(snap.members[user_id]) == [int(r) for r in role_ids]
    assert codec.decode_user(user_id, snap.users[user_id])["global_name"] == "g" * 32


async def test_long_members_and_users_keep_their_bucket_a_listpack(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    # Stored in pieces, so their bucket stays listpack-encoded, and read back whole.
    cache = make_cache(redis_client, namespace, bucket_bits=4)
    guild_id, user_id, role_ids, payload = await long_member(cache)
    member = cache.world.members[guild_id][user_id]
    keys_ = cache.reader.keys
    member_bucket, user_bucket = keys_.member_bucket(guild_id, user_id), keys_.user_bucket(user_id)
    assert await redis_client.object("encoding", member_bucket) == b"listpack"
    assert await redis_client.object("encoding", user_bucket) == b"listpack"
    found = await cache.reader.get_member(guild_id, user_id)
    assert found is not None
    assert found.username == "u" * 32
    assert found.nickname == "n" * 32
    assert [str(r) for r in found.role_ids if r != guild_id] == role_ids
    channel_id = int(payload["channels"][0]["id"])
    permissions = await cache.reader.member_permissions(guild_id, user_id, channel_id)
    assert permissions is not None
    assert int(permissions) & (1 << 39)  # granted by the 40th role only
    # Fewer roles: the shorter member is read, not the pieces the longer one left.
    member["roles"] = role_ids[:1]
    await cache.apply("GUILD_MEMBER_UPDATE", {**member, "guild_id": str(guild_id)})
    shorter = await cache.reader.get_member(guild_id, user_id)
    assert shorter is not None
    assert [str(r) for r in shorter.role_ids if r != guild_id] == role_ids[:1]
    # Removed: no piece stays behind.
    await cache.apply(
        "GUILD_MEMBER_REMOVE", {"guild_id": str(guild_id), "user": {"id": str(user_id)}}
    )
    fields = await redis_client.hkeys(member_bucket)
    assert not [f for f in fields if f.startswith(codec.pair_bytes(guild_id, user_id))]


async def test_a_redis_that_does_not_answer_skips_the_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens there: the process starts (as through any Redis outage) and says so.
    client = redis.asyncio.Redis(port=servers.free_port(), socket_connect_timeout=1)
    try:
        assert not await layout.claim(client, keys.RedisKeys("ns", "main"))
    finally:
        await client.aclose()
    assert "cache layout not checked" in caplog.text
