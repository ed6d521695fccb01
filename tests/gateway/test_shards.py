"""When a held shard counts as stuck (what the gateway's liveness reads), on a fake clock."""

from __future__ import annotations

from gateway import shards


def test_a_shard_queued_to_identify_is_never_stuck_however_long_it_waits() -> None:
    stats = shards.ShardStats(changed_at=0.0, queued=True)
    assert not stats.stalled(now=shards.STALL_AFTER * 100)


def test_a_connected_shard_is_never_stuck() -> None:
    stats = shards.ShardStats(connected=True, changed_at=0.0)
    assert not stats.stalled(now=shards.STALL_AFTER * 100)


def test_a_shard_neither_connected_nor_queued_is_stuck_only_after_the_grace() -> None:
    stats = shards.ShardStats(changed_at=100.0)
    assert not stats.stalled(now=100.0 + shards.STALL_AFTER)  # hikari's back-off fits in it
    assert stats.stalled(now=100.0 + shards.STALL_AFTER + 0.001)


def test_the_grace_outlasts_hikaris_longest_reconnect_back_off() -> None:
    from hikari.impl import shard  # noqa: PLC0415

    assert shards.STALL_AFTER >= 3 * shard._BACKOFF_CAP
