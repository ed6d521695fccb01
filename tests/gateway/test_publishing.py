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
