"""Rolling restarts and crashes lose no event and RESUME every shard."""

from __future__ import annotations

import asyncio
import collections
import signal
import typing

import orjson
import pytest

from shared import topology
from tests.gateway.conftest import stop_process

if typing.TYPE_CHECKING:
    from playground.discord import emulator
    from tests.gateway.conftest import EventSink, Stack


class Chatter:
    """Users posting numbered messages in every guild while the gateways change hands."""

    def __init__(self, discord: emulator.DiscordEmulator, channels: list[int]) -> None:
        self.discord = discord
        self.channels = channels
        self.user = discord.add_user("chatter")
        self.sent: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        index = 0
        while True:
            for channel_id in self.channels:
                text = f"m{index}"
                self.discord.send_message(channel_id, self.user, text)
                self.sent.append(text)
                index += 1
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


def setup_guilds(discord: emulator.DiscordEmulator, shard_count: int) -> list[int]:
    channels = []
    for shard in range(shard_count):
        guild = discord.add_guild(f"g{shard}", shard=(shard, shard_count))
        channels.append(int(discord.channels_of(int(guild["id"]))[0]["id"]))
    return channels


def replay_flags(sink: EventSink) -> list[tuple[str, tuple[str, int], bool]]:
    """``(gateway, (session, seq), flagged as a replay)`` for every MESSAGE_CREATE received."""
    flags = []
    for message in sink.messages:
        body = orjson.loads(message.body)
        flagged = bool((message.headers or {}).get(topology.HEADER_REPLAY))
        flags.extend(
            (envelope["gateway"], (envelope["session"], envelope["seq"]), flagged)
            for envelope in (body if isinstance(body, list) else [body])
            if envelope["t"] == "MESSAGE_CREATE"
        )
    return flags


def contents(sink: EventSink) -> collections.Counter[str]:
    return collections.Counter(e["d"]["content"] for e in sink.of("MESSAGE_CREATE"))


async def wait_connected(discord: emulator.DiscordEmulator, shards: list[int]) -> None:
    await discord.wait_for(
        lambda: discord.connected_shards() == shards, timeout=30, what=f"shards {shards}"
    )


@pytest.fixture
async def chatty(make_emulator: typing.Any, stack: Stack) -> tuple[Stack, Chatter]:
    stack.discord = await make_emulator(max_concurrency=2, recommended_shards=2)
    chatter = Chatter(stack.discord, setup_guilds(stack.discord, 2))
    return stack, chatter


async def test_rolling_restart_resumes_every_shard_with_no_loss_and_no_duplicate(
    chatty: tuple[Stack, Chatter],
) -> None:
    stack, chatter = chatty
    discord = stack.discord
    sink = await stack.listen(["MESSAGE_CREATE"])
    first = stack.spawn(SHARD_COUNT="2", SHARD_IDS="0-1")
    await wait_connected(discord, [0, 1])
    await asyncio.sleep(2.5)  # the gateway reads interests every 2 s
    chatter.start()
    await asyncio.sleep(1.0)
    log = await stop_process(first)
    assert first.returncode == 0, log
    assert "1001" not in log
    await asyncio.sleep(0.5)  # Discord keeps dispatching into the sessions meanwhile
    second = stack.spawn(SHARD_COUNT="2", SHARD_IDS="0-1")
    await discord.wait_for(lambda: len(discord.records.resumes) >= 2, timeout=30, what="resumes")
    await asyncio.sleep(1.0)
    await chatter.stop()
    await discord.wait_for(
        lambda: len(sink.of("MESSAGE_CREATE")) >= len(chatter.sent),
        timeout=30,
        what="every message",
    )
    await asyncio.sleep(0.5)
    log = await stop_process(second)
    assert second.returncode == 0, log
    counts = contents(sink)
    assert set(counts) == set(chatter.sent), "no event lost"
    assert max(counts.values()) == 1, "no event duplicated"
    assert all(r.accepted and r.path == "/resume" for r in discord.records.resumes)
    assert sorted(r.shard_id for r in discord.records.resumes[:2]) == [0, 1]
    assert len([i for i in discord.records.identifies if i.accepted]) == 2, (
        "only the first start identified"
    )
    assert not any(c.code in (1000, 1001) for c in discord.records.closes if c.by_client)


async def test_kill_9_successor_resumes_after_the_lease_expires(
    chatty: tuple[Stack, Chatter],
) -> None:
    stack, chatter = chatty
    discord = stack.discord
    sink = await stack.listen(["MESSAGE_CREATE"])
    first = stack.spawn(SHARD_COUNT="2", LEASE_TTL="3")
    await wait_connected(discord, [0, 1])
    await asyncio.sleep(2.5)
    chatter.start()
    await asyncio.sleep(1.0)
    await stop_process(first, signal.SIGKILL)
    second = stack.spawn(SHARD_COUNT="2", LEASE_TTL="3")
    await discord.wait_for(lambda: len(discord.records.resumes) >= 2, timeout=40, what="resumes")
    await asyncio.sleep(0.5)
    await chatter.stop()
    await discord.wait_for(
        lambda: set(contents(sink)) >= set(chatter.sent), timeout=30, what="every message"
    )
    await stop_process(second)
    counts = contents(sink)
    assert set(counts) == set(chatter.sent), "no event lost"
    assert all(r.accepted for r in discord.records.resumes)
    assert len([i for i in discord.records.identifies if i.accepted]) == 2
    # Duplicates are only events the first process had not seen confirmed; same session, seq.
    by_key = collections.Counter((e["session"], e["seq"]) for e in sink.of("MESSAGE_CREATE"))
    for envelope in sink.of("MESSAGE_CREATE"):
        if counts[envelope["d"]["content"]] > 1:
            assert (
                by_key[(envelope["session"], envelope["seq"])] == counts[envelope["d"]["content"]]
            )
    # The successor flagged what Discord replayed before RESUMED, the duplicates among it: a
    # worker holds those while Redis is away instead of trusting its own memory (soak seed
    # 311771, worker/dedupe.py). The first process IDENTIFYed: nothing of its is flagged.
    flags = replay_flags(sink)
    first_gateway = sink.envelopes[0]["gateway"]
    assert not any(flag for gateway, _, flag in flags if gateway == first_gateway)
    # What was said while no gateway held the shards is replayed too: some are flagged.
    assert any(flag for gateway, _, flag in flags if gateway != first_gateway)
    duplicated = {
        (e["session"], e["seq"])
        for e in sink.of("MESSAGE_CREATE")
        if by_key[(e["session"], e["seq"])] > 1
    }
    for gateway, key, flag in flags:
        if gateway != first_gateway and key in duplicated:
            assert flag, f"a replayed copy of {key} was not flagged"
