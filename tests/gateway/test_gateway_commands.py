"""Gateway commands from workers reach Discord as the right opcodes, within its limits."""

from __future__ import annotations

import asyncio
import typing
import uuid

import aio_pika
import orjson
import pytest

from playground.discord import protocol
from shared import gateway_commands
from shared.gateway_commands import GatewayCommandError, RefusalReason
from worker import remote_shard

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

    from tests.gateway.conftest import Stack


class Replies:
    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, typing.Any]] = {}

    async def on_message(self, message: pika_abc.AbstractIncomingMessage) -> None:
        assert message.correlation_id is not None
        self.bodies[message.correlation_id] = orjson.loads(message.body)
        await message.ack()


async def send(
    stack: Stack,
    channel: pika_abc.AbstractChannel,
    routing_key: str,
    body: bytes,
    reply_to: str,
) -> str:
    correlation = uuid.uuid4().hex
    exchange = await channel.get_exchange(stack.topology.commands_exchange)
    await exchange.publish(
        aio_pika.Message(body, reply_to=reply_to, correlation_id=correlation), routing_key
    )
    return correlation


def activity_name(d: dict[str, typing.Any]) -> str:
    activity = d["activities"][0] if d.get("activities") else d["game"]
    return str(activity["name"])


def presence(shard: int, name: str = "a game") -> bytes:
    return gateway_commands.encode(
        gateway_commands.GatewayCommand(
            3,
            shard,
            {
                "since": None,
                "activities": [{"name": name, "type": 0}],
                "status": "idle",
                "afk": False,
            },
        )
    )


async def test_commands_reach_discord_as_opcodes(stack: Stack) -> None:
    discord = stack.discord
    guild = discord.add_guild("g")
    voice = discord.world.add_channel(int(guild["id"]), "voice", kind=2)
    channel = await stack.connection.channel()
    reply_queue = await channel.declare_queue(exclusive=True)
    replies = Replies()
    await reply_queue.consume(replies.on_message)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        shard_key = stack.topology.shard_key("main", 0)
        sent = [
            await send(stack, channel, shard_key, presence(0), reply_queue.name),
            await send(
                stack, channel, shard_key,
                gateway_commands.encode(gateway_commands.GatewayCommand(4, 0, {
                    "guild_id": guild["id"], "channel_id": voice["id"],
                    "self_mute": False, "self_deaf": True,
                })),
                reply_queue.name,
            ),
            await send(
                stack, channel, stack.topology.gateway_key(gateway.gateway_id),
                gateway_commands.encode(gateway_commands.GatewayCommand(8, 0, {
                    "guild_id": guild["id"], "query": "", "limit": 0, "nonce": "abc",
                })),
                reply_queue.name,
            ),
        ]  # fmt: skip
        await discord.wait_for(lambda: len(replies.bodies) == 3, what="three answers")
        assert [replies.bodies[c] for c in sent] == [{"ok": True}] * 3
        await discord.wait_for(lambda: len(discord.records.commands) == 3)
        ops = [(c.op, c.shard_id) for c in discord.records.commands]
        assert sorted(ops) == [(3, 0), (4, 0), (8, 0)]
        by_op = {c.op: c.d for c in discord.records.commands}
        assert by_op[3]["status"] == "idle"
        # hikari 2.7 sends the activity in the legacy "game" field, which Discord still takes.
        assert activity_name(by_op[3]) == "a game"
        assert (by_op[4]["channel_id"], by_op[4]["self_deaf"]) == (voice["id"], True)
        assert by_op[8]["nonce"] == "abc"


async def test_bad_commands_and_absent_shards_get_a_clear_error(stack: Stack) -> None:
    discord = stack.discord
    channel = await stack.connection.channel()
    reply_queue = await channel.declare_queue(exclusive=True)
    replies = Replies()
    await reply_queue.consume(replies.on_message)
    async with stack.gateway(SHARD_COUNT="2", SHARD_IDS="0") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        direct = stack.topology.gateway_key(gateway.gateway_id)
        bad = await send(
            stack, channel, direct, b'{"v":1,"op":4,"shard":0,"d":{}}', reply_queue.name
        )
        absent = await send(stack, channel, direct, presence(1), reply_queue.name)
        junk = await send(stack, channel, direct, b"not json", reply_queue.name)
        await discord.wait_for(lambda: len(replies.bodies) == 3)
        assert replies.bodies[bad] == {
            "ok": False, "reason": "invalid",
            "error": "invalid gateway command: 'guild_id' must be a snowflake",
        }  # fmt: skip
        assert replies.bodies[absent] == {
            "ok": False, "reason": "not_held",
            "error": f"shard 1 is not held by gateway {gateway.gateway_id}",
        }  # fmt: skip
        assert replies.bodies[junk]["ok"] is False
        assert not discord.records.commands
        assert gateway.commands is not None
        assert gateway.commands.rejected == 3


async def test_an_over_limit_burst_is_throttled_not_dropped(stack: Stack) -> None:
    discord = stack.discord
    channel = await stack.connection.channel()
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        key = stack.topology.shard_key("main", 0)
        exchange = await channel.get_exchange(stack.topology.commands_exchange)
        for index in range(130):
            await exchange.publish(aio_pika.Message(presence(0, f"g{index}")), key)
        # hikari holds a shard to 117 non-heartbeat sends a minute (Discord: 120, heartbeats
        # included), IDENTIFY being the first; the rest wait for the window instead of getting
        # the shard closed with 4008.
        await discord.wait_for(lambda: len(discord.records.commands) >= 116, timeout=15)
        await asyncio.sleep(1.0)
        assert len(discord.records.commands) == 116
        assert not [c for c in discord.records.closes if c.code == protocol.Close.RATE_LIMITED]
        assert discord.connected_shards() == [0]
        assert gateway.commands is not None
        assert gateway.commands.rejected == 0
        assert len(gateway.commands._tasks) == 14, "the rest are waiting, not dropped"
        names = [activity_name(c.d) for c in discord.records.commands]
        assert names == [f"g{i}" for i in range(116)], "in order"


def members(shard: int, **d: typing.Any) -> bytes:
    payload = {"guild_id": "41", "query": "", "limit": 0, **d}
    return gateway_commands.encode(gateway_commands.GatewayCommand(8, shard, payload))


#: Commands the worker's checks let through (or a raw publisher sends) that hikari refused in
#: the gateway, where they used to stay unacked and unanswered: name, body, reason.
BAD_IN_THE_GATEWAY: typing.Final = [
    ("presences without the intent", members(0, presences=True), "invalid"),
    ("limit over 100", members(0, query="a", limit=101), "invalid"),
    ("a non-ASCII digit id", members(0, guild_id="١٢٣"), "invalid"),
    (
        "since out of range",
        orjson.dumps({"v": 1, "op": 3, "shard": 0, "d": {
            "since": 10**18, "activities": [], "status": "idle", "afk": False,
        }}),
        "invalid",
    ),
    ("an unknown activity type", presence(0).replace(b'"type":0', b'"type":99'), "invalid"),
    ("an oversized message", members(0, query="q" * 5000, limit=1), "too_large"),
]  # fmt: skip


async def test_each_command_the_shard_cannot_send_is_acked_with_a_typed_reason(
    stack: Stack,
) -> None:
    discord = stack.discord
    channel = await stack.connection.channel()
    reply_queue = await channel.declare_queue(exclusive=True)
    replies = Replies()
    await reply_queue.consume(replies.on_message)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        key = stack.topology.shard_key("main", 0)
        sent = {
            name: await send(stack, channel, key, body, reply_queue.name)
            for name, body, _ in BAD_IN_THE_GATEWAY
        }
        await discord.wait_for(lambda: len(replies.bodies) == len(sent), what="every answer")
        for name, _, reason in BAD_IN_THE_GATEWAY:
            body = replies.bodies[sent[name]]
            assert (body["ok"], body["reason"]) == (False, reason), name
        assert gateway.commands is not None
        assert not gateway.commands._tasks
        assert not discord.records.commands
        assert discord.connected_shards() == [0], "no bad command reached Discord"


async def test_a_waiting_worker_gets_the_gateways_reason_as_a_typed_error(stack: Stack) -> None:
    discord = stack.discord
    guild = discord.add_guild("g")
    channel = await stack.connection.channel(publisher_confirms=True)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        shard = remote_shard.RemoteShard(
            channel,
            pool="main",
            namespace=stack.namespace,
            shard_id=0,
            shard_count=1,
            replies=remote_shard.CommandReplies(channel, timeout=10),
        )
        # The worker cannot know the gateway's intents (GUILD_PRESENCES is not among the
        # defaults): the gateway refuses, and says why.
        with pytest.raises(GatewayCommandError, match="GUILD_PRESENCES") as refused:
            await shard.request_guild_members(int(guild["id"]), include_presences=True)
        assert refused.value.reason is RefusalReason.INVALID
        await shard.request_guild_members(int(guild["id"]), nonce="fine")  # sent: returns
        await discord.wait_for(lambda: len(discord.records.commands) == 1)
        other = await stack.connection.channel(publisher_confirms=True)  # one reply consumer each
        absent = remote_shard.RemoteShard(
            other,
            pool="main",
            namespace=stack.namespace,
            shard_id=0,
            shard_count=2,
            reply_to=stack.topology.reply_queue("main", "nobody"),
            replies=remote_shard.CommandReplies(other, timeout=30),
        )
        # No queue takes it: refused at once as not sent (the broker returned it), not left
        # to the caller's timeout.
        with pytest.raises(GatewayCommandError) as unrouted:
            await absent.update_presence()
        assert unrouted.value.reason is RefusalReason.NO_ROUTE


async def test_300_bad_commands_then_a_good_one_still_works(stack: Stack) -> None:
    discord = stack.discord
    channel = await stack.connection.channel()
    reply_queue = await channel.declare_queue(exclusive=True)
    replies = Replies()
    await reply_queue.consume(replies.on_message)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        key = stack.topology.shard_key("main", 0)
        exchange = await channel.get_exchange(stack.topology.commands_exchange)
        for _ in range(300):  # nobody waits for these: refused to the dead-letter queue
            await exchange.publish(aio_pika.Message(members(0, presences=True)), key)
        good = await send(stack, channel, key, presence(0), reply_queue.name)
        await discord.wait_for(lambda: good in replies.bodies, timeout=15, what="the answer")
        assert replies.bodies[good] == {"ok": True}
        assert gateway.commands is not None
        assert gateway.commands.rejected == 300
        dead = await channel.declare_queue(
            stack.topology.dead_letter_queue, passive=True, durable=True
        )
        assert dead.declaration_result.message_count == 300


async def test_commands_waiting_out_a_throttle_are_answered_when_the_shard_reconnects(
    stack: Stack,
) -> None:
    discord = stack.discord
    channel = await stack.connection.channel()
    reply_queue = await channel.declare_queue(exclusive=True)
    replies = Replies()
    await reply_queue.consume(replies.on_message)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        key = stack.topology.shard_key("main", 0)
        sent = [
            await send(stack, channel, key, presence(0, f"g{i}"), reply_queue.name)
            for i in range(130)
        ]
        await discord.wait_for(lambda: len(discord.records.commands) >= 116, timeout=15)
        discord.force_reconnect(0)
        await discord.wait_for(lambda: len(replies.bodies) == 130, timeout=15, what="answers")
        reasons = [replies.bodies[c].get("reason", "sent") for c in sent]
        assert reasons[:116] == ["sent"] * 116
        assert set(reasons[116:]) == {"not_sent"}, "refused, the caller may send again"
        assert gateway.commands is not None
        assert not gateway.commands._tasks
