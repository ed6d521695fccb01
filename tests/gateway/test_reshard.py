"""How a gateway follows the pool's re-shard record (``shared.reshard``)."""

from __future__ import annotations

import typing

from shared import reshard

if typing.TYPE_CHECKING:
    import pytest

    from tests.gateway.conftest import Stack

State = reshard.State


async def record(stack: Stack, source: int, target: int, state: reshard.State) -> None:
    await reshard.save(
        stack.redis, stack.keys, reshard.Reshard(source, target, state), stack.admin_key
    )


async def test_a_gateway_of_the_old_layout_started_after_a_reshard_takes_no_shard(
    stack: Stack,
) -> None:
    discord = stack.discord
    await record(stack, 1, 2, State.DONE)
    async with stack.gateway(SHARD_COUNT="2") as serving:
        await discord.wait_for(lambda: len(discord.connected_shards()) == 2, what="new layout")
        identified = len(discord.records.identifies)
        async with stack.gateway(SHARD_COUNT="1") as stale:
            assert stale.retired
            assert stale.group is not None
            assert not stale.group.shards
        assert len(discord.records.identifies) == identified
        assert not serving.retired


async def test_a_record_whose_new_layout_does_not_serve_retires_nobody(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """An old record written back (or a layout removed since): the gateway serves on, says
    why, and retires by itself once the new layout comes up."""
    discord = stack.discord
    await record(stack, 1, 2, State.DONE)
    async with stack.gateway(SHARD_COUNT="1") as kept:
        assert not kept.retired
        await discord.wait_for(lambda: discord.connected_shards() == [0], what="serving on")
        refusal = [r for r in caplog.records if "no gateway of the layout" in r.getMessage()]
        assert len(refusal) == 1
        assert getattr(refusal[0], "successor_shard_count", None) == 2
        async with stack.gateway(SHARD_COUNT="2"):
            await discord.wait_for(lambda: kept.retired, timeout=30, what="retired afterwards")


async def test_an_earlier_reshard_does_not_retire_the_standby_gateways_of_the_next(
    stack: Stack,
) -> None:
    await record(stack, 1, 2, State.DONE)  # the last re-shard went to 2; now 2 -> 3
    async with stack.gateway(SHARD_COUNT="3", GATEWAY_STANDBY="true") as standby:
        assert standby.group is not None
        group = standby.group
        await stack.discord.wait_for(lambda: len(group.shards) == 3, timeout=30, what="3 shards")
        assert not standby.retired
        assert standby.standby
        assert standby.publisher is not None
        assert standby.publisher.muted


async def test_an_aborted_reshard_retires_its_standby_gateway_and_a_new_one_revives_it(
    stack: Stack,
) -> None:
    discord = stack.discord
    await record(stack, 1, 2, State.WARMING)
    async with stack.gateway(SHARD_COUNT="2", GATEWAY_STANDBY="true") as standby:
        assert standby.group is not None
        group = standby.group
        await discord.wait_for(lambda: sorted(group.shards) == [0, 1], what="two shards")
        await record(stack, 1, 2, State.ABORTED)
        await discord.wait_for(lambda: standby.retired and not group.shards, what="retired")
        assert await stack.redis.exists(stack.keys.lease(0, 2)) == 0
        await record(stack, 1, 2, State.WARMING)
        await discord.wait_for(lambda: not standby.retired, what="revived")
        await discord.wait_for(lambda: sorted(group.shards) == [0, 1], what="shards again")
        assert standby.standby


async def test_a_standby_gateway_with_the_count_already_serving_takes_nothing(
    stack: Stack,
) -> None:
    discord = stack.discord
    async with stack.gateway(SHARD_COUNT="1") as serving:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        await serving.write_status()
        async with stack.gateway(SHARD_COUNT="1", GATEWAY_STANDBY="true") as mistaken:
            assert mistaken.retired
            assert mistaken.group is not None
            assert not mistaken.group.shards
        assert serving.group is not None
        assert sorted(serving.group.shards) == [0]


async def test_a_step_older_than_one_followed_is_refused(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A validly signed record written back after a later step (a replay) moves nothing."""
    discord = stack.discord
    warming = reshard.Reshard(1, 2, State.WARMING)
    earlier = reshard.Reshard(1, 2, State.SWITCHING, at=warming.at - 60)  # signed before it
    await reshard.save(stack.redis, stack.keys, warming, stack.admin_key)
    async with stack.gateway(SHARD_COUNT="2", GATEWAY_STANDBY="true") as standby:
        assert standby.group is not None
        group = standby.group
        await discord.wait_for(lambda: sorted(group.shards) == [0, 1], what="two shards")
        await reshard.save(stack.redis, stack.keys, earlier, stack.admin_key)
        await discord.wait_for(
            lambda: any(r.getMessage() == "re-shard record refused" for r in caplog.records)
        )
        refusal = next(r for r in caplog.records if r.getMessage() == "re-shard record refused")
        assert getattr(refusal, "reason", "") == "older than a step already followed"
        assert standby.standby
        # The next step, as shardline writes it (later than the last, whatever the clock).
        await reshard.save(
            stack.redis, stack.keys, reshard.step(warming, State.SWITCHING), stack.admin_key
        )
        await discord.wait_for(lambda: not standby.standby, what="publishing")


async def test_a_stop_first_redeploy_back_to_the_old_count_is_not_retired_by_the_leftover(
    stack: Stack,
) -> None:
    """The 2-shard layout stops (its status still fresh) and a 1-shard gateway starts: the
    finished 1 -> 2 record must not retire it, or the pool would have no gateway at all."""
    discord = stack.discord
    await record(stack, 1, 2, State.DONE)
    async with stack.gateway(SHARD_COUNT="2") as leaving:
        await discord.wait_for(lambda: len(discord.connected_shards()) == 2, what="2 shards")
        await leaving.write_status()
    async with stack.gateway(SHARD_COUNT="1") as back:
        assert not back.retired
        await discord.wait_for(lambda: 0 in discord.connected_shards(), what="serving")
