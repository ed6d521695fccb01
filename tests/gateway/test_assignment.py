"""Shard assignment: identify coordination across gateways, and automatic leases."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import typing

import pytest

from gateway import identify

if typing.TYPE_CHECKING:
    from gateway import app
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


def held(gateways: list[app.GatewayApp]) -> list[set[int]]:
    return [set(g.group.shards) if g.group is not None else set() for g in gateways]


async def test_auto_leases_rebalance_from_two_to_three_and_back(
    make_emulator: EmulatorFactory, stack: Stack
) -> None:
    stack.discord = discord = await make_emulator(max_concurrency=6, recommended_shards=6)
    for shard in range(6):
        discord.add_guild(f"g{shard}", shard=(shard, 6))
    overlaps: list[list[set[int]]] = []
    gateways: list[app.GatewayApp] = []

    async def watch() -> None:
        while True:
            sets = held(gateways)
            flat = [s for each in sets for s in each]
            if len(flat) != len(set(flat)):
                overlaps.append(sets)
            await asyncio.sleep(0.01)

    async with contextlib.AsyncExitStack() as exits:
        watcher = asyncio.get_running_loop().create_task(watch())
        gateways.append(await exits.enter_async_context(stack.gateway(LEASE_TTL="3")))
        gateways.append(await exits.enter_async_context(stack.gateway(LEASE_TTL="3")))
        await discord.wait_for(
            lambda: sorted(len(h) for h in held(gateways)) == [3, 3], timeout=20, what="3+3"
        )
        async with stack.gateway(LEASE_TTL="3") as third:
            gateways.append(third)
            await discord.wait_for(
                lambda: sorted(len(h) for h in held(gateways)) == [2, 2, 2],
                timeout=30,
                what="2+2+2",
            )
            await discord.wait_for(lambda: discord.connected_shards() == list(range(6)), timeout=20)
        gateways.remove(third)
        await discord.wait_for(
            lambda: sorted(len(h) for h in held(gateways)) == [3, 3], timeout=30, what="back to 3+3"
        )
        await discord.wait_for(lambda: discord.connected_shards() == list(range(6)), timeout=20)
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    assert overlaps == [], "a shard was held by two gateways at once"
    # Shards that moved resumed their sessions: only the first six starts identified.
    assert len([r for r in discord.records.identifies if r.accepted]) == 6
    assert discord.records.resumes
    assert all(r.accepted for r in discord.records.resumes)
    assert not [
        c for c in discord.records.closes if "elsewhere" in c.reason or "replaced" in c.reason
    ]


async def test_refuses_to_identify_when_the_session_start_budget_is_nearly_spent(
    make_emulator: EmulatorFactory, stack: Stack
) -> None:
    stack.discord = discord = await make_emulator(
        session_start_remaining=identify.SESSION_START_RESERVE
    )
    with pytest.raises(identify.SessionStartBudgetError, match="refusing to IDENTIFY"):
        async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
            pass
    assert discord.records.identifies == []
    assert discord.records.token_resets == 0
    ledger = identify.SessionStartLedger(stack.redis, stack.keys)
    assert await ledger.remaining() == identify.SESSION_START_RESERVE
