from __future__ import annotations

import pytest

from shared import sharding


def test_shard_for_guild_follows_discords_formula() -> None:
    guild_id = 197038439483310086
    assert sharding.shard_for_guild(guild_id, 1) == 0
    assert sharding.shard_for_guild(guild_id, 16) == (guild_id >> 22) % 16
    assert sharding.shard_for_guild(0, 5) == 0
    with pytest.raises(ValueError, match="shard_count"):
        sharding.shard_for_guild(guild_id, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-7", tuple(range(8))),
        ("0,2,4", (0, 2, 4)),
        ("4,0-2, 9", (0, 1, 2, 4, 9)),
        ("3", (3,)),
        ("1-1,1", (1,)),
    ],
)
def test_parse_shard_ids(text: str, expected: tuple[int, ...]) -> None:
    assert sharding.parse_shard_ids(text) == expected


@pytest.mark.parametrize("text", ["", "a", "0-", "-1", "5-2", "0,,1", "1.5"])
def test_parse_shard_ids_rejects_nonsense(text: str) -> None:
    with pytest.raises(sharding.ShardIdsError):
        sharding.parse_shard_ids(text)


def test_parse_shard_ids_checks_the_count() -> None:
    assert sharding.parse_shard_ids("0-3", 4) == (0, 1, 2, 3)
    with pytest.raises(sharding.ShardIdsError, match="shard 4 does not exist"):
        sharding.parse_shard_ids("0-4", 4)


def test_identify_bucket_is_shard_mod_max_concurrency() -> None:
    assert [sharding.identify_bucket(s, 16) for s in (0, 15, 16, 33)] == [0, 15, 0, 1]
    assert sharding.identify_bucket(7, 1) == 0
    with pytest.raises(ValueError, match="max_concurrency"):
        sharding.identify_bucket(0, 0)


@pytest.mark.parametrize(("count", "parts"), [(10, 3), (16, 4), (3, 5), (1, 1), (100, 7)])
def test_split_shards_covers_every_shard_once_evenly(count: int, parts: int) -> None:
    ranges = sharding.split_shards(count, parts)
    assert len(ranges) == parts
    assert [s for r in ranges for s in r] == list(range(count))
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_split_shards_rejects_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sharding.split_shards(0, 1)
