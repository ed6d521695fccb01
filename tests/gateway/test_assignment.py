"""Lease-mode assignment: each gateway holds its fair share of the pool's shards
(``gateway.assignment``)."""

from __future__ import annotations

import asyncio
import contextlib
import typing

import pytest

if typing.TYPE_CHECKING:
    from gateway import app
    from tests.conftest import EmulatorFactory
    from tests.gateway.conftest import Stack


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
