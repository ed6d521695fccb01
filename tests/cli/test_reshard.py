"""``shardline reshard``: a new shard layout starts beside the old one, then takes over."""

from __future__ import annotations

import asyncio
import collections
import typing

import pytest

from cli.exit_codes import ExitCode
from shared import reshard
from tests.cli.running import run

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack


@pytest.mark.usefixtures("operator_env")
async def test_reshard_one_to_two_shards_loses_no_event_and_closes_the_old_layout(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    discord = stack.discord
    guilds = [discord.add_guild(f"g{i}", shard=(i % 2, 2)) for i in range(4)]
    channels = [int(discord.channels_of(int(g["id"]))[0]["id"]) for g in guilds]
    user = discord.add_user("traffic")
    sink = await stack.listen(["MESSAGE_CREATE"])
    sent: list[str] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            for channel_id in channels:
                content = f"m{len(sent)}"
                discord.send_message(channel_id, user, content)
                sent.append(content)
            await asyncio.sleep(0.02)

    async with stack.gateway(SHARD_COUNT="1") as old:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        await old.write_status()
        flowing = asyncio.create_task(traffic())
        async with stack.gateway(SHARD_COUNT="2", GATEWAY_STANDBY="true") as new:
            ran = await run(capsys, "reshard", "--shards", "2", "--timeout", "60", "--json")
            await asyncio.sleep(0.3)
            stop.set()
            await flowing
            received = lambda: {e["d"]["content"] for e in sink.of("MESSAGE_CREATE")}  # noqa: E731
            await discord.wait_for(lambda: set(sent) <= received(), timeout=15, what="every event")
            assert ran.code == 0, ran
            # The progress goes to stderr, the result is the one document on stdout.
            assert "2/2 new shards READY" in ran.err
            assert "done: the pool runs 2 shards" in ran.err
            assert ran.document() == {"action": "run", "state": "done", "source": 1, "target": 2}
            assert old.retired
            assert old.group is not None
            assert not old.group.shards
            assert not new.standby
            assert new.group is not None
            assert sorted(new.group.shards) == [0, 1]
            record = await reshard.load(stack.redis, stack.keys, stack.admin_key)
            assert record is not None
            assert record.state is reshard.State.DONE
            assert await stack.redis.exists(stack.keys.session(0, 1)) == 0
            assert await stack.redis.exists(stack.keys.session(0, 2)) == 1
    layouts = collections.Counter(e["shard"][1] for e in sink.of("MESSAGE_CREATE"))
    assert layouts[1] > 0
    assert layouts[2] > 0  # both layouts published, one after the other
    # Events arrive twice only while both layouts publish: from the new layout's switch to
    # the old one's retirement, a few re-shard polls (0.4 s here: 80 of ~3,000 events at
    # 200/s). Two seconds' worth is the bound.
    counts = collections.Counter(e["d"]["content"] for e in sink.of("MESSAGE_CREATE"))
    repeated = sum(1 for n in counts.values() if n > 1)
    assert repeated <= len(channels) * 50 * 2
    assert not discord.records.identify_violations
    identified = [(r.shard_id, r.shard_count) for r in discord.records.identifies if r.accepted]
    assert sorted(identified) == [(0, 1), (0, 2), (1, 2)]  # each session started once


@pytest.mark.usefixtures("operator_env")
async def test_a_reshard_whose_new_layout_never_comes_up_is_aborted_and_changes_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    discord = stack.discord
    async with stack.gateway(SHARD_COUNT="1") as old:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        await old.write_status()
        ran = await run(capsys, "reshard", "--shards", "2", "--timeout", "1")
        assert ran.code == ExitCode.TIMED_OUT
        assert "0/2 new shards READY" in ran.out
        [error] = ran.err.splitlines()
        assert error.startswith("shardline: only 0/2 new shards were READY in time: aborted")
        record = await reshard.load(stack.redis, stack.keys, stack.admin_key)
        assert record is not None
        assert record.state is reshard.State.ABORTED
        await asyncio.sleep(1.0)  # a few re-shard polls: the old layout is not retired
        assert not old.retired
        assert old.group is not None
        assert sorted(old.group.shards) == [0]


@pytest.mark.usefixtures("operator_env")
async def test_a_shard_count_below_one_is_refused_before_anything_moves(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = await run(capsys, "reshard", "--shards", "0")
    assert ran.code == ExitCode.USAGE
    assert ran.error_line == (
        "shardline reshard: argument --shards: must be at least 1 (see shardline reshard --help)"
    )
    assert await reshard.load(stack.redis, stack.keys, stack.admin_key) is None
