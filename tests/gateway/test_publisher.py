"""Dispatches become envelopes on the events exchange."""

from __future__ import annotations

import asyncio
import typing

import orjson

from gateway import publisher
from shared import envelope, sharding
from shared import interests as shared_interests
from shared.cache import resources
from shared.cache import writer as cache_writer

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
    await shared_interests.announce(stack.redis, stack.keys, "default", events, replace=True)

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


def events_in(body: bytes) -> int:
    decoded = orjson.loads(body)
    return len(decoded) if isinstance(decoded, list) else 1


class GatedExchange:
    """The real events exchange, whose confirms a test hands out one by one (a slow broker)."""

    def __init__(self, exchange: typing.Any) -> None:
        self._exchange = exchange
        self._released = 0
        self._changed = asyncio.Condition()
        self.sent = 0

    async def publish(self, message: typing.Any, routing_key: str) -> typing.Any:
        self.sent += 1
        number = self.sent
        confirm = await self._exchange.publish(message, routing_key)
        async with self._changed:
            await self._changed.wait_for(lambda: self._released >= number)
        return confirm

    async def release(self, count: int | None = None) -> None:
        """Confirm ``count`` more messages, or every one sent so far."""
        async with self._changed:
            self._released = self.sent if count is None else self._released + count
            self._changed.notify_all()

    async def open(self) -> None:
        """Confirm everything from now on."""
        async with self._changed:
            self._released = 1 << 62
            self._changed.notify_all()


async def gated_publisher(
    stack: Stack, **options: typing.Any
) -> tuple[GatedExchange, publisher.EventPublisher]:
    channel = await stack.connection.channel(publisher_confirms=True)
    events_exchange, _ = await stack.topology.declare_exchanges(channel)
    gated = GatedExchange(events_exchange)
    events = publisher.EventPublisher(
        typing.cast("typing.Any", gated), pool="main", gateway_id="gw", reply_to="rq", **options
    )
    events.interests = frozenset({"MESSAGE_CREATE", "TYPING_START"})
    return gated, events


async def test_events_that_arrive_during_a_broker_round_trip_go_out_together(
    stack: Stack,
) -> None:
    """A quiet shard publishes each event at once; while its message is unconfirmed, what
    arrives waits and then goes out as one message (at most MAX_BATCH events each), in order;
    a drain sends what waits at once, whatever the window."""
    sink = await stack.listen(["MESSAGE_CREATE", "TYPING_START"])
    gated, events = await gated_publisher(stack)
    stream = events.stream(0, 1)
    events.begin_session(stream, "s", "wss://resume", 0)
    try:
        events.accept(stream, 1, "MESSAGE_CREATE", {"n": 1})
        await asyncio.sleep(0.05)
        assert gated.sent == 1  # the first event went at once
        for seq in range(2, 6):
            events.accept(stream, seq, "MESSAGE_CREATE", {"n": seq})
            await asyncio.sleep(0.01)
        events.accept(stream, 6, "TYPING_START", {"n": 6})
        await asyncio.sleep(0.05)
        assert gated.sent == 1  # held while the first is unconfirmed
        assert events.checkpoints()[0].seq == 0
        await gated.release()  # the first confirms; what waited goes out in two messages
        await stack.discord.wait_for(lambda: gated.sent == 3, what="the waiting events")
        await gated.release()
        await stack.discord.wait_for(lambda: len(sink.envelopes) == 6, what="six events")
        assert [events_in(m.body) for m in sink.messages] == [1, 4, 1]
        assert [e["seq"] for e in sink.envelopes] == [1, 2, 3, 4, 5, 6]
        await stack.discord.wait_for(lambda: events.checkpoints()[0].seq == 6, what="checkpoint")
        # What waited long goes out in messages of at most MAX_BATCH.
        events.accept(stream, 7, "MESSAGE_CREATE", {"n": 7})
        await asyncio.sleep(0.05)
        sent = gated.sent  # seq 7 is out, unconfirmed: the rest waits
        count = 2 * publisher.MAX_BATCH + 10
        for seq in range(8, 8 + count):
            events.accept(stream, seq, "MESSAGE_CREATE", {"n": seq})
        await asyncio.sleep(0.05)
        assert gated.sent == sent
        # A drain does not wait for the window: everything waiting goes out now.
        draining = asyncio.ensure_future(events.drain(timeout=10))
        await stack.discord.wait_for(lambda: gated.sent == sent + 3, what="the drain's messages")
        await gated.release()
        assert await draining
        await stack.discord.wait_for(lambda: len(sink.envelopes) == 7 + count, what="all events")
        sizes = [events_in(m.body) for m in sink.messages[3:]]
        assert sizes == [1, publisher.MAX_BATCH, publisher.MAX_BATCH, 10]
        assert [e["seq"] for e in sink.envelopes] == list(range(1, 8 + count))
        assert events.checkpoints()[0].seq == 7 + count
    finally:
        await gated.open()
        await events.close()


async def test_the_checkpoint_never_passes_an_event_still_waiting(stack: Stack) -> None:
    """A cache write finished for a later event must not carry the checkpoint past an earlier
    event that waits for the window: a successor would RESUME after it and never get it."""
    await stack.listen(["MESSAGE_CREATE"])
    gated, events = await gated_publisher(
        stack,
        cache_writer=cache_writer.CacheWriter(
            stack.keys, resources.CacheResource.MEMBERS, shard_count=1
        ),
        redis=stack.redis,
    )
    stream = events.stream(0, 1)
    events.begin_session(stream, "s", "wss://resume", 0)
    member = {
        "guild_id": "81384788765712384",
        "user": {"id": "80351110224678912", "username": "nelly", "discriminator": "0"},
        "roles": [],
        "joined_at": "2024-05-01T10:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
    }
    try:
        events.accept(stream, 1, "MESSAGE_CREATE", {"n": 1})
        await stack.discord.wait_for(lambda: gated.sent == 1, what="seq 1 published")
        events.accept(stream, 2, "MESSAGE_CREATE", {"n": 2})  # waits for the window
        events.accept(stream, 3, "GUILD_MEMBER_ADD", member)  # cache only: written at once
        await stack.discord.wait_for(lambda: events.stats.cache_writes == 1, what="cache write")
        assert events.checkpoints()[0].seq == 0
        await gated.release(1)  # seq 1 confirmed; seq 2 goes out and waits
        await stack.discord.wait_for(lambda: gated.sent == 2, what="seq 2 published")
        assert events.checkpoints()[0].seq == 1  # not 3: seq 2 is not confirmed
        await gated.release(1)
        await stack.discord.wait_for(lambda: events.checkpoints()[0].seq == 3, what="all")
    finally:
        await gated.open()
        await events.close()


async def test_handing_over_one_shard_waits_for_its_events_only(stack: Stack) -> None:
    await stack.listen(["MESSAGE_CREATE"])
    gated, events = await gated_publisher(stack)
    moving, staying = events.stream(0, 2), events.stream(1, 2)
    events.begin_session(moving, "s0", "wss://resume", 0)
    events.begin_session(staying, "s1", "wss://resume", 0)
    try:
        events.accept(moving, 1, "MESSAGE_CREATE", {"n": 1})
        await stack.discord.wait_for(lambda: gated.sent == 1, what="shard 0's message")
        events.accept(staying, 1, "MESSAGE_CREATE", {"n": 1})
        events.accept(moving, 2, "MESSAGE_CREATE", {"n": 2})  # waits for shard 0's window
        await stack.discord.wait_for(lambda: gated.sent == 2, what="shard 1's message")
        draining = asyncio.ensure_future(events.drain(timeout=10, shard_id=0))
        await stack.discord.wait_for(lambda: gated.sent == 3, what="shard 0's second message")
        await gated.release(1)  # shard 0's first; shard 1's stays unconfirmed
        await asyncio.sleep(0.05)
        assert not draining.done()
        await gated.release(2)  # shard 1's (sent second) and shard 0's last
        assert await asyncio.wait_for(draining, timeout=5)
        assert events.checkpoints()[0].seq == 2
        # Shard 1's traffic does not hold a drain of shard 0 up.
        events.accept(staying, 2, "MESSAGE_CREATE", {"n": 2})
        await stack.discord.wait_for(lambda: gated.sent == 4, what="shard 1's next message")
        assert await asyncio.wait_for(events.drain(timeout=10, shard_id=0), timeout=1)
        assert not await events.drain(timeout=0.2)  # the whole gateway still waits for it
    finally:
        await gated.open()
        await events.close()


async def test_batches_stay_under_the_byte_cap_and_an_oversize_chunk_is_never_retried(
    stack: Stack,
) -> None:
    """A run of big events goes out in messages of at most MAX_BATCH_BYTES (in order); a member
    chunk over the workers' limit is dead-lettered as a stub without its payload, counted, and
    not retried: the shard's checkpoint moves past it and the next events flow."""
    sink = await stack.listen(["MESSAGE_CREATE", "GUILD_MEMBERS_CHUNK"])
    channel = await stack.connection.channel(publisher_confirms=True)
    events_exchange, _ = await stack.topology.declare_exchanges(channel)
    dead_queue = await stack.topology.declare_dead_letter(channel)
    dead = await channel.get_exchange(stack.topology.dead_letter_exchange)
    events = publisher.EventPublisher(
        events_exchange, pool="main", gateway_id="gw", reply_to="rq", dead_letter=dead
    )
    events.interests = frozenset({"MESSAGE_CREATE", "GUILD_MEMBERS_CHUNK"})
    stream = events.stream(0, 1)
    events.begin_session(stream, "s", "wss://resume", 0)
    big = "x" * (300 * 1024)
    try:
        for seq in range(1, 9):  # one flush: 2.4 MB of one routing key
            events.accept(stream, seq, "MESSAGE_CREATE", {"n": seq, "content": big})
        await stack.discord.wait_for(lambda: len(sink.envelopes) == 8, what="the big events")
        assert all(len(m.body) <= publisher.MAX_BATCH_BYTES for m in sink.messages)
        assert len(sink.messages) >= 3
        assert [e["seq"] for e in sink.envelopes] == list(range(1, 9))
        chunk = {
            "guild_id": "1", "members": [], "chunk_index": 0, "chunk_count": 1,
            "not_found": ["y" * (envelope.MAX_MESSAGE_BYTES + 1)],
        }  # fmt: skip
        events.accept(stream, 9, "GUILD_MEMBERS_CHUNK", chunk)
        events.accept(stream, 10, "MESSAGE_CREATE", {"n": 10})
        await stack.discord.wait_for(lambda: events.checkpoints()[0].seq == 10, what="settled")
        await stack.discord.wait_for(lambda: len(sink.envelopes) == 9, what="seq 10")
        assert sink.envelopes[-1]["seq"] == 10
        assert not sink.of("GUILD_MEMBERS_CHUNK")  # never sent to the workers
        assert events.stats.oversize_events == 1
        assert events.stats.publish_failures == 0  # refused once, never retried
        assert events.outstanding == 0
        parked = await dead_queue.get(timeout=5)
        await parked.ack()
        stub = orjson.loads(parked.body)
        assert (stub["t"], stub["seq"], "d" in stub) == ("GUILD_MEMBERS_CHUNK", 9, False)
        reason = str(parked.headers["x-shardline-reason"])
        assert "exceed the workers' limit" in reason
        assert parked.routing_key == stack.topology.event_key("main", "GUILD_MEMBERS_CHUNK")
    finally:
        await events.close()
