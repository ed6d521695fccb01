"""Shard maths: which shard a guild lives on, shard id lists, identify buckets, ranges."""

from __future__ import annotations

import typing

__all__: typing.Sequence[str] = (
    "ShardIdsError",
    "identify_bucket",
    "parse_shard_ids",
    "shard_for_guild",
    "split_shards",
)


class ShardIdsError(ValueError):
    """A shard id list could not be parsed or does not fit the shard count."""


def shard_for_guild(guild_id: int, shard_count: int) -> int:
    """Return the shard that receives a guild's events, as Discord routes them."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    return (guild_id >> 22) % shard_count


def identify_bucket(shard_id: int, max_concurrency: int) -> int:
    """Return the identify rate-limit bucket (``rate_limit_key``) of a shard."""
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    return shard_id % max_concurrency


def parse_shard_ids(text: str, shard_count: int | None = None) -> tuple[int, ...]:
    """Parse ``0-7``, ``0,2,4`` or a mix (``0-3,8``) into sorted, unique shard ids.

    When ``shard_count`` is given, every id must be below it.
    """
    ids: set[int] = set()
    for raw_part in text.split(","):
        part = raw_part.strip()
        if not part:
            raise ShardIdsError(f"empty item in {text!r}; expected ranges like 0-7 or 0,2,4")
        first, sep, last = part.partition("-")
        try:
            start = int(first)
            end = int(last) if sep else start
        except ValueError:
            raise ShardIdsError(
                f"{part!r} is not a shard id or range; expected ranges like 0-7 or 0,2,4"
            ) from None
        if start < 0 or end < start:
            raise ShardIdsError(f"{part!r} is not an ascending range of non-negative ids")
        ids.update(range(start, end + 1))
    if shard_count is not None:
        too_big = [shard for shard in ids if shard >= shard_count]
        if too_big:
            raise ShardIdsError(
                f"shard {min(too_big)} does not exist with a shard count of {shard_count}"
            )
    return tuple(sorted(ids))


def split_shards(shard_count: int, parts: int) -> list[range]:
    """Split ``shard_count`` shards into ``parts`` contiguous ranges of near-equal size.

    The first ``shard_count % parts`` ranges hold one shard more, so ranges never differ
    by more than one shard and together cover every shard exactly once.
    """
    if shard_count < 1 or parts < 1:
        raise ValueError("shard_count and parts must be at least 1")
    base, extra = divmod(shard_count, parts)
    ranges: list[range] = []
    start = 0
    for index in range(parts):
        size = base + (1 if index < extra else 0)
        ranges.append(range(start, start + size))
        start += size
    return ranges
