"""arc's and tanjun's quick-starts on two worker replicas against the emulator, both frameworks
loaded at once (a bot migrating from one to the other); their commands registered once by
``sync-commands``; their late answers within the worker's 3 s guard; their limits in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import typing

import pytest

from shared import config
from tests.worker.test_runtime import text_channel, worker
from worker import app
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from playground.discord import rest_state
    from tests.gateway.conftest import Stack

# tanjun 2.17.7 calls alluka APIs that alluka deprecated (tanjun's own code, on every command
# context); the suite turns warnings into errors.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:tanjun.*")

QUICK_STARTS: typing.Final = (
    "tests.worker.frameworks.arc_quickstart,tests.worker.frameworks.tanjun_quickstart"
)
SLOW: typing.Final = "tests.worker.frameworks.plugin_slow"


def command(stack: Stack, name: str, options: list[dict[str, typing.Any]] | None = None,
            resolved: dict[str, typing.Any] | None = None) -> dict[str, typing.Any]:  # fmt: skip
    """An application command's ``data`` as Discord sends it (resolved objects included)."""
    data = {
        "id": str(stack.discord.world.snowflakes.next()),
        "name": name,
        "type": 1,
        "options": options or [],
    }
    if resolved is not None:
        data["resolved"] = resolved
    return data


@contextlib.asynccontextmanager
async def two_replicas(stack: Stack, plugins: str) -> typing.AsyncIterator[list[app.WorkerApp]]:
    async with (
        worker(stack, bot_module.Bot(), WORKER_PLUGINS=plugins) as first,
        worker(stack, bot_module.Bot(), WORKER_PLUGINS=plugins) as second,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        await stack.discord.wait_for(lambda: stack.discord.connected_shards() == [0])
        yield [first, second]


def handled_interactions(replica: app.WorkerApp) -> int:
    assert replica.consumer is not None
    return replica.consumer.stats.handled["INTERACTION_CREATE"]


def content(interaction: rest_state.Interaction) -> str:
    assert interaction.original is not None, "answered"
    return str(interaction.original["content"])


async def test_arc_and_tanjun_quick_starts_answer_on_two_replicas_registered_once(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    settings = config.WorkerSettings.from_env(stack.env(WORKER_PLUGINS=QUICK_STARTS))
    report = await app.sync_commands(settings, dry_run=False)
    assert "+ hi\n+ places\n2 to add, 0 to change, 0 to remove" in report, report
    [put] = [c for c in discord.records.rest if c.method == "PUT"]
    registered = {c["name"]: c for c in put.body}
    assert sorted(registered) == ["hi", "places"]
    [user_option] = registered["hi"]["options"]
    assert (user_option["type"], user_option["name"], user_option["required"]) == (6, "user", True)
    assert [(o["type"], o["name"]) for o in registered["places"]["options"]] == [(1, "europe")]
    again = await app.sync_commands(settings, dry_run=True)
    assert "0 to add, 0 to change, 0 to remove, 2 unchanged" in again, again

    async with two_replicas(stack, QUICK_STARTS) as replicas:
        alice, bob = discord.add_user("alice"), discord.add_user("bob")
        greeting = command(
            stack, "hi", [{"name": "user", "type": 6, "value": bob["id"]}],
            {"users": {bob["id"]: bob}},
        )  # fmt: skip
        europe = command(stack, "places", [{"name": "europe", "type": 1, "options": []}])
        sent = []
        for _ in range(4):
            # One at a time: interactions sent together travel in one batch, to one replica.
            for name, data in (("hi", greeting), ("places", europe)):
                sent.append(discord.send_interaction(channel_id, alice, name, data=data))
                await discord.wait_for(lambda: sent[-1].original is not None, what="an answer")
        discord.send_message(channel_id, alice, "!note add milk two litres")
        await discord.wait_for(
            lambda: any(
                m["content"] == "Added milk note with value two litres"
                for m in discord.world.messages[channel_id].values()
            ),
            what="tanjun's prefix command's answer",
        )
        discord.send_message(channel_id, alice, "!ping")
        await discord.wait_for(
            lambda: any(
                m["content"].startswith("PONG\n - REST: ")
                for m in discord.world.messages[channel_id].values()
            ),
            what="tanjun's ping, edited with the gateway's heartbeat latency",
        )
        # Both replicas answered commands; neither declared any at its start.
        assert all(handled_interactions(r) > 0 for r in replicas)
    assert [content(i) for i in sent] == [
        f"Hey <@{bob['id']}>!",
        "I don't know how to describe Europe... small?",
    ] * 4
    assert all(i.response_type == 4 for i in sent)
    assert len([c for c in discord.records.rest if c.method == "PUT"]) == 1
    callbacks = [c for c in discord.records.rest if c.path.endswith("/callback")]
    assert len(callbacks) == len(sent), "one answer each: tanjun never says 'Command not found'"
    assert all(c.status < 300 for c in callbacks)


async def test_framework_commands_answered_late_are_delivered_after_the_deferral(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    async with two_replicas(stack, SLOW):
        carol = discord.add_user("carol")
        sent = {
            name: discord.send_interaction(channel_id, carol, name, data=command(stack, name))
            for name in ("arc-slow", "arc-slower", "tanjun-slow")
        }
        await discord.wait_for(
            lambda: all(i.original is not None for i in sent.values()),
            timeout=20,
            what="the late answers",
        )
    assert {name: content(i) for name, i in sent.items()} == {
        "arc-slow": "arc, slowly",
        "arc-slower": "arc, without its autodefer",  # deferred by the worker, not by arc
        "tanjun-slow": "tanjun, slowly",
    }
    callbacks = [c for c in discord.records.rest if c.path.endswith("/callback")]
    assert len(callbacks) == len(sent)
    for call in callbacks:
        interaction = next(i for i in sent.values() if f"/{i.id}/" in call.path)
        assert call.status < 300
        assert call.body["type"] == 5, "deferred"
        assert call.at - interaction.created_at_wall < 3.0


async def test_a_tanjun_cooldown_in_redis_holds_across_two_replicas(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    async with two_replicas(stack, SLOW) as replicas:
        dave = discord.add_user("dave")
        sent = []
        for _ in range(4):
            sent.append(
                discord.send_interaction(
                    channel_id, dave, "limited", data=command(stack, "limited")
                )
            )
            await discord.wait_for(lambda: sent[-1].original is not None, what="an answer")
        assert all(handled_interactions(r) > 0 for r in replicas)
    answers = [content(i) for i in sent]
    assert answers[0] == "ran"
    assert all(a.startswith("This command is currently in cooldown") for a in answers[1:])


async def test_tanjuns_member_converter_reads_the_redis_cache_not_rest(stack: Stack) -> None:
    discord = stack.discord
    guild_id, channel_id = text_channel(stack)
    async with two_replicas(stack, "tests.worker.frameworks.plugin_tanjun_cache") as replicas:
        bob = discord.add_user("bob")
        discord.add_member(guild_id, bob)  # GUILD_MEMBER_ADD: the gateway caches bob
        cache = replicas[0].bot.cache
        for _ in range(100):
            if await cache.get_member(guild_id, int(bob["id"])) is not None:
                break
            await asyncio.sleep(0.05)
        discord.send_message(channel_id, discord.add_user("erin"), f"!whois <@{bob['id']}>")
        await discord.wait_for(
            lambda: any(
                m["content"] == "that is bob" for m in discord.world.messages[channel_id].values()
            ),
            what="the member's name",
        )
    member_path = f"/guilds/{guild_id}/members/{bob['id']}"
    assert not [c for c in discord.records.rest if c.path == member_path]
