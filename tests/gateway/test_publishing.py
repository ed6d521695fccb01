"""Dispatches become envelopes on the events exchange."""

from __future__ import annotations

import typing

from shared import envelope, sharding

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack


async def test_events_reach_a_bound_queue_as_envelopes(stack: Stack) -> None:
    discord = stack.discord
    guild = discord.add_guild("g", shard=(1, 2))
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    sink = await stack.listen(["MESSAGE_CREATE", "GUILD_CREATE"])
    async with stack.gateway(SHARD_COUNT="2", SHARD_IDS="0-1") as gateway:
        await discord.wait_for(lambda: sink.of("GUILD_CREATE"), what="GUILD_CREATE")
        user = discord.add_user("alice")
        discord.send_message(channel_id, user, "hello")
        await discord.wait_for(lambda: sink.of("MESSAGE_CREATE"), what="MESSAGE_CREATE")
        [message] = sink.of("MESSAGE_CREATE")
        parsed = envelope.decode_message(envelope.encode_batch([_to_envelope(message)]))[0]
        assert parsed.pool == "main"
        assert parsed.gateway == gateway.gateway_id
        assert parsed.reply_to == stack.topology.reply_queue("main", gateway.gateway_id)
        assert (parsed.shard_id, parsed.shard_count) == (1, 2)
        assert parsed.shard_id == sharding.shard_for_guild(int(guild["id"]), 2)
        assert parsed.d["content"] == "hello"
        assert parsed.session == discord.gateway.shards[1].session_id
        assert parsed.seq == discord.gateway.shards[1].seq
        # READY is not listened to, so it never reached the broker.
        assert not sink.of("READY")
        assert gateway.publisher is not None
        assert gateway.publisher.stats.skipped_events >= 2


def _to_envelope(raw: dict[str, typing.Any]) -> envelope.EventEnvelope:
    return envelope.decode(envelope.orjson.dumps(raw))


async def test_a_worker_finds_the_cache_already_reflecting_the_event(stack: Stack) -> None:
    """The gateway writes the cache before it publishes: read it from inside the consumer."""
    from hikari.impl import entity_factory  # noqa: PLC0415

    from shared.cache import reader  # noqa: PLC0415

    discord = stack.discord
    guild = discord.add_guild("g")
    guild_id = int(guild["id"])
    factory = entity_factory.EntityFactoryImpl(typing.cast("typing.Any", object()))
    cache = reader.CacheReader(stack.redis, stack.keys, factory)
    seen: list[tuple[str, bool]] = []
    events = ["GUILD_MEMBER_ADD", "CHANNEL_CREATE", "GUILD_CREATE"]
    channel = await stack.connection.channel()
    queue, _ = await stack.topology.declare_worker_queues(channel, "main", "default", events)
    await stack.redis.sadd(stack.keys.interests("default"), *events)
    await stack.redis.sadd(stack.keys.interest_groups(), "default")

    async def check_then_ack(message: typing.Any) -> None:
        body = envelope.decode_message(message.body)
        for item in body:
            if item.t == "GUILD_MEMBER_ADD":
                member = await cache.get_member(guild_id, int(item.d["user"]["id"]))
                seen.append((item.t, member is not None))
            elif item.t == "CHANNEL_CREATE":
                channel = await cache.get_channel(int(item.d["id"]))
                seen.append((item.t, channel is not None))
            elif item.t == "GUILD_CREATE":
                seen.append((item.t, await cache.get_guild(guild_id) is not None))
        await message.ack()

    await queue.consume(check_then_ack)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: ("GUILD_CREATE", True) in seen, what="GUILD_CREATE")
        for index in range(20):
            discord.add_member(guild_id, discord.add_user(f"u{index}"))
            created = discord.world.add_channel(guild_id, f"c{index}")
            discord.dispatch("CHANNEL_CREATE", created, guild_id=guild_id)
        await discord.wait_for(lambda: len(seen) >= 41, what="every event")
    assert all(found for _, found in seen), seen
    assert len([s for s in seen if s[0] == "GUILD_MEMBER_ADD"]) == 20
