"""Identify coordination across gateways: the per-bucket IDENTIFY slots (``gateway.identify``;
the session start budget is ``test_session_ledger``)."""

from __future__ import annotations

import itertools
import time
import typing

if typing.TYPE_CHECKING:
    from tests.conftest import EmulatorFactory
    from tests.gateway.conftest import Stack


async def test_two_gateways_eight_shards_respect_identify_buckets(
    make_emulator: EmulatorFactory, stack: Stack
) -> None:
    stack.discord = discord = await make_emulator(max_concurrency=2, recommended_shards=8)
    for shard in range(8):
        discord.add_guild(f"g{shard}", shard=(shard, 8))
    started = time.monotonic()
    async with (
        stack.gateway(SHARD_COUNT="8", SHARD_IDS="0-3"),
        stack.gateway(SHARD_COUNT="8", SHARD_IDS="4-7"),
    ):
        await discord.wait_for(
            lambda: discord.connected_shards() == list(range(8)), timeout=40, what="8 shards"
        )
        elapsed = time.monotonic() - started
    assert not discord.records.identify_violations
    accepted = [r for r in discord.records.identifies if r.accepted]
    assert sorted(r.shard_id for r in accepted) == list(range(8))
    # 4 identifies per bucket need at least 3 windows of 5 s; the emulator saw them within one
    # window more (the whole start, with two gateways starting on a loaded machine, is looser).
    minimum = 3 * 5.0
    assert minimum <= elapsed < 40, elapsed
    span = max(r.at for r in accepted) - min(r.at for r in accepted)
    assert minimum <= span <= minimum + 5.0, span
    for bucket in (0, 1):
        times = sorted(r.at for r in accepted if r.bucket == bucket)
        assert all(b - a >= 5.0 for a, b in itertools.pairwise(times))
