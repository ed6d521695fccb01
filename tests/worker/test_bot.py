"""What bot code sees of the ``Bot`` before and after the worker starts, and that the README's
plugin examples (and a plugin written like them) pass mypy strict as they are."""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import subprocess
import sys
import time
import typing

import hikari
import pytest

from shared import status
from tests.worker import test_consumer as consumer_tests
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
#: The plugins written as the README tells a bot author to.
TYPED_PLUGINS: typing.Final = ("tests/worker/plugin_hikari.py",)


def test_what_exists_once_started_says_so_before() -> None:
    bot = bot_module.Bot()
    for name in ("rest", "cache", "settings", "redis", "keys"):
        with pytest.raises(RuntimeError, match=rf"^bot\.{name} exists once the worker has started"):
            getattr(bot, name)
    # What hikari's GatewayBotAware traits declare, before start.
    assert bot.event_manager is bot.events
    assert isinstance(bot.event_manager, hikari.api.EventManager)
    assert isinstance(bot, hikari.EventManagerAware)
    assert isinstance(bot, hikari.EntityFactoryAware)
    assert isinstance(bot, hikari.EventFactoryAware)
    assert isinstance(bot, hikari.IntentsAware)
    assert isinstance(bot, hikari.ExecutorAware)
    assert bot.executor is None
    assert not bot.is_alive
    assert bot.get_me() is None


async def test_once_started_the_bot_has_its_clients_and_every_shard(stack: Stack) -> None:
    bot = bot_module.Bot()

    @bot.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None: ...

    async with consumer_tests.worker(stack, bot, INTENTS="GUILDS,GUILD_MESSAGES"):
        assert await bot.settings.guild(1) is not None
        assert await bot.cache.get_guild(1) is None  # asks Redis: nothing cached there
        assert await bot.redis.ping()
        assert bot.keys.prefix.endswith(":main")
        assert bot.intents == hikari.Intents.GUILDS | hikari.Intents.GUILD_MESSAGES
        bot.shard_count = 3  # as the last event this replica took said
        assert list(bot.shards) == [0, 1, 2]
        assert bot.shards[2].id == 2
        assert bot.shards[2].shard_count == 3
        with pytest.raises(KeyError):
            bot.shards[3]


def test_shard_count_and_heartbeat_latencies_come_from_the_gateways_records() -> None:
    bot = bot_module.Bot()
    assert bot.heartbeat_latencies == {}
    assert math.isnan(bot.heartbeat_latency)
    now = time.time()
    serving = status.GatewayStatus(
        gateway="a", pool="main", shard_count=4, at=now,
        shards={0: status.ShardStatus(connected=True, latency=0.04),
                1: status.ShardStatus(connected=True, latency=None),
                2: status.ShardStatus(connected=False)},
    )  # fmt: skip
    other = status.GatewayStatus(
        gateway="b", pool="main", shard_count=4, at=now,
        shards={3: status.ShardStatus(connected=True, latency=0.06)},
    )  # fmt: skip
    stale = status.GatewayStatus(
        gateway="c", pool="main", shard_count=8, at=now - 3600,
        shards={5: status.ShardStatus(connected=True, latency=9.0)},
    )  # fmt: skip
    standby = status.GatewayStatus(
        gateway="d", pool="main", shard_count=8, at=now, standby=True,
        shards={6: status.ShardStatus(connected=True, latency=9.0)},
    )  # fmt: skip
    bot.observe_gateways([serving, other, stale, standby])
    assert bot.shard_count == 4
    latencies = bot.heartbeat_latencies
    assert sorted(latencies) == [0, 1, 3]
    assert math.isnan(latencies[1])
    assert bot.heartbeat_latency == pytest.approx(0.05)
    # Mid re-shard two layouts publish: the events this replica takes say which (kept).
    bot.observe_gateways([serving, dataclasses.replace(standby, standby=False)])
    assert bot.shard_count == 4


async def test_the_bots_shard_methods_reach_the_gateway_holding_the_shard(stack: Stack) -> None:
    discord = stack.discord
    guild_id = int(discord.add_guild("g")["id"])
    bot = bot_module.Bot()

    @bot.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None: ...

    async with consumer_tests.worker(stack, bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        await bot.update_presence(status=hikari.Status.IDLE)
        await bot.update_voice_state(guild_id, None)
        await bot.request_guild_members(guild_id, nonce="n1")
        await discord.wait_for(lambda: len(discord.records.commands) == 3, what="the commands")
    by_op = {c.op: (c.shard_id, c.d) for c in discord.records.commands}
    assert by_op[3][1]["status"] == "idle"
    assert by_op[4][1] == {
        "guild_id": str(guild_id), "channel_id": None, "self_mute": False, "self_deaf": False,
    }  # fmt: skip
    assert by_op[8][1]["nonce"] == "n1"
    assert {shard for shard, _ in by_op.values()} == {0}


def readme_plugins() -> list[str]:
    """The README's Python examples that define a plugin (``def setup``)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    return [block for block in blocks if re.search(r"^(async )?def setup\(", block, re.MULTILINE)]


@pytest.mark.timeout(600)
def test_the_readmes_plugin_examples_pass_mypy_strict(tmp_path: pathlib.Path) -> None:
    examples = readme_plugins()
    assert len(examples) >= 2, "the README's plugin examples moved"
    files = []
    for number, example in enumerate(examples):
        path = tmp_path / f"readme_plugin_{number}.py"
        path.write_text(example)
        files.append(str(path))
    files += [str(ROOT / plugin) for plugin in TYPED_PLUGINS]
    # Unused locals are an example's, not an error: strict is otherwise the project's.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--warn-unreachable", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
