"""The emulated gateway against Discord's documented behaviour, with a bare client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from playground.discord import emulator, protocol
from shared import sharding
from tests.playground.client import RawGatewayClient

if TYPE_CHECKING:
    from tests.conftest import EmulatorFactory as Factory

Close = protocol.Close


async def connect(discord: emulator.DiscordEmulator, **kwargs: object) -> RawGatewayClient:
    client = await RawGatewayClient.connect(discord.gateway.base_url, **kwargs)  # type: ignore[arg-type]
    hello = await client.receive()
    assert hello["op"] == protocol.Op.HELLO
    return client


async def test_hello_and_heartbeat_ack(discord: emulator.DiscordEmulator) -> None:
    client = await RawGatewayClient.connect(discord.gateway.base_url)
    hello = await client.receive()
    assert hello == {"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}
    await client.send(1, None)
    assert (await client.receive())["op"] == protocol.Op.HEARTBEAT_ACK
    await client.close()


async def test_a_connection_that_stops_heartbeating_is_closed_and_stays_resumable(
    make_emulator: Factory,
) -> None:
    discord = await make_emulator(heartbeat_interval=0.2)
    client = await connect(discord)
    await client.identify(discord.token)
    ready = await client.dispatch("READY")
    assert await client.closed_with(timeout=3) == Close.SESSION_TIMED_OUT
    again = await connect(discord)
    await again.send(6, {"token": discord.token, "session_id": ready["d"]["session_id"], "seq": 1})
    assert (await again.dispatch("RESUMED"))["t"] == "RESUMED"
    await again.close()


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream"])
async def test_transport_compression(discord: emulator.DiscordEmulator, compress: str) -> None:
    guild = discord.add_guild("g")
    client = await connect(discord, compress=compress)
    await client.identify(discord.token)
    await client.dispatch("READY")
    created = await client.dispatch("GUILD_CREATE")
    assert created["d"]["id"] == guild["id"]
    assert client.raw_frames, "frames should be binary when compressed"
    await client.close()


async def test_identify_then_ready_then_exactly_the_shards_guilds(make_emulator: Factory) -> None:
    discord = await make_emulator(max_concurrency=4)
    guilds = {shard: discord.add_guild(f"g{shard}", shard=(shard, 4)) for shard in range(4)}
    extra = discord.add_guild("g2b", shard=(2, 4))
    client = await connect(discord)
    await client.identify(discord.token, shard=[2, 4])
    ready = await client.dispatch("READY")
    d = ready["d"]
    assert ready["s"] == 1
    assert d["v"] == 10
    assert d["shard"] == [2, 4]
    assert d["user"]["id"] == str(discord.world.bot_id)
    assert d["resume_gateway_url"] == discord.gateway.resume_url
    assert sorted(g["id"] for g in d["guilds"]) == sorted([guilds[2]["id"], extra["id"]])
    assert all(g["unavailable"] for g in d["guilds"])
    creates = [await client.dispatch("GUILD_CREATE"), await client.dispatch("GUILD_CREATE")]
    assert sorted(c["d"]["id"] for c in creates) == sorted([guilds[2]["id"], extra["id"]])
    assert [c["s"] for c in creates] == [2, 3]
    for created in creates:
        assert sharding.shard_for_guild(int(created["d"]["id"]), 4) == 2
        assert created["d"]["channels"]
    await client.close()


@pytest.mark.parametrize(
    ("identify", "code"),
    [
        ({"token": "wrong"}, Close.AUTHENTICATION_FAILED),
        ({"shard": [4, 4]}, Close.INVALID_SHARD),
        ({"shard": [0, 0]}, Close.INVALID_SHARD),
        ({"shard": "0"}, Close.INVALID_SHARD),
        ({"intents": 1 << 40}, Close.INVALID_INTENTS),
        ({"intents": None}, Close.INVALID_INTENTS),
    ],
)
async def test_identify_checks(
    discord: emulator.DiscordEmulator, identify: dict[str, object], code: int
) -> None:
    client = await connect(discord)
    d: dict[str, object] = {"token": discord.token, "intents": 513, "properties": {}}
    d.update(identify)
    await client.send(2, d)
    assert await client.closed_with() == code


async def test_privileged_intents_not_enabled_are_disallowed(make_emulator: Factory) -> None:
    discord = await make_emulator(privileged_intents=int(protocol.Intent.MESSAGE_CONTENT))
    client = await connect(discord)
    await client.identify(discord.token, intents=int(protocol.Intent.GUILD_PRESENCES))
    assert await client.closed_with() == Close.DISALLOWED_INTENTS


async def test_sharding_required(make_emulator: Factory) -> None:
    discord = await make_emulator(max_guilds_per_shard=2)
    for index in range(3):
        discord.add_guild(f"g{index}")
    client = await connect(discord)
    await client.identify(discord.token)
    assert await client.closed_with() == Close.SHARDING_REQUIRED


@pytest.mark.parametrize(
    ("op", "d", "code"),
    [
        (3, {"status": "online"}, Close.NOT_AUTHENTICATED),
        (42, None, Close.UNKNOWN_OPCODE),
    ],
)
async def test_protocol_errors(
    discord: emulator.DiscordEmulator, op: int, d: object, code: int
) -> None:
    client = await connect(discord)
    await client.send(op, d)
    assert await client.closed_with() == code


async def test_decode_error_and_already_authenticated(discord: emulator.DiscordEmulator) -> None:
    client = await connect(discord)
    await client.ws.send_str("{not json")
    assert await client.closed_with() == Close.DECODE_ERROR
    client = await connect(discord)
    await client.identify(discord.token)
    await client.dispatch("READY")
    await client.identify(discord.token)
    assert await client.closed_with() == Close.ALREADY_AUTHENTICATED


async def test_wrong_api_version(discord: emulator.DiscordEmulator) -> None:
    client = await RawGatewayClient.connect(discord.gateway.base_url, version=6)
    assert await client.closed_with() == Close.INVALID_API_VERSION


async def test_more_than_120_commands_a_minute_closes_with_4008(
    discord: emulator.DiscordEmulator,
) -> None:
    client = await connect(discord)
    await client.identify(discord.token)
    await client.dispatch("READY")
    for _ in range(120):
        await client.send(3, {"since": None, "activities": [], "status": "online", "afk": False})
    await client.send(1, 1)
    assert await client.closed_with() == Close.RATE_LIMITED
    assert len(discord.records.commands) == 119


async def test_identify_limit_per_bucket(make_emulator: Factory) -> None:
    discord = await make_emulator(max_concurrency=2)
    clients = []
    for shard in (0, 1, 2):
        client = await connect(discord)
        await client.identify(discord.token, shard=[shard, 4])
        clients.append(client)
    assert (await clients[0].dispatch("READY"))["d"]["shard"] == [0, 4]
    assert (await clients[1].dispatch("READY"))["d"]["shard"] == [1, 4]
    # shard 2 shares bucket 0 with shard 0 and came within 5 s: INVALID_SESSION, recorded.
    refused = await clients[2].receive()
    assert refused["op"] == protocol.Op.INVALID_SESSION
    assert refused["d"] is False
    [violation] = discord.records.identify_violations
    assert (violation.shard_id, violation.bucket) == (2, 0)
    assert [r.accepted for r in discord.records.identifies] == [True, True, False]
    for client in clients:
        await client.close()


async def test_session_start_limit(make_emulator: Factory) -> None:
    discord = await make_emulator(
        session_start_total=2, session_start_remaining=1, max_concurrency=16
    )
    limit = discord.gateway.session_start_limit()
    assert (limit["total"], limit["remaining"], limit["max_concurrency"]) == (2, 1, 16)
    first = await connect(discord)
    await first.identify(discord.token, shard=[0, 2])
    await first.dispatch("READY")
    assert discord.gateway.session_start_limit()["remaining"] == 0
    second = await connect(discord)
    await second.identify(discord.token, shard=[1, 2])
    assert await second.closed_with() == Close.AUTHENTICATION_FAILED
    assert discord.records.token_resets == 1
    await first.close()


async def test_resume_replays_what_the_session_missed(discord: emulator.DiscordEmulator) -> None:
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("alice")
    client = await connect(discord)
    await client.identify(discord.token)
    ready = await client.dispatch("READY")
    created = await client.dispatch("GUILD_CREATE")
    discord.send_message(channel_id, user, "one")
    first = await client.dispatch("MESSAGE_CREATE")
    await client.close(4000)
    await discord.wait_for(lambda: discord.gateway.shards[0].connection is None, what="disconnect")
    # While disconnected, the session keeps counting; RESUME replays in order.
    for text in ("two", "three"):
        discord.send_message(channel_id, user, text)
    again = await RawGatewayClient.connect(ready["d"]["resume_gateway_url"])
    await again.receive()
    await again.send(
        6, {"token": discord.token, "session_id": ready["d"]["session_id"], "seq": first["s"]}
    )
    replayed = await again.receive_until(lambda p: p.get("t") == "RESUMED")
    assert [p["d"].get("content") for p in replayed[:-1]] == ["two", "three"]
    assert [p["s"] for p in replayed] == [first["s"] + 1, first["s"] + 2, first["s"] + 3]
    assert created["s"] == 2
    [resume] = discord.records.resumes
    assert (resume.accepted, resume.replayed, resume.path) == (True, 2, "/resume")
    discord.send_message(channel_id, user, "four")
    assert (await again.dispatch("MESSAGE_CREATE"))["s"] == first["s"] + 4
    await again.close()


async def test_a_second_resume_from_an_earlier_seq_replays_no_earlier_resumed(
    discord: emulator.DiscordEmulator,
) -> None:
    """Gateway, "Resuming": the replay finishes with RESUMED, and what follows is new. Two
    connections resuming one session in turn (a gateway that lost its lease and its
    successor, soak seed 555678): the second, from an earlier seq, must not meet the first
    one's RESUMED in its replay, or it takes the rest of the replay for new events."""
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("alice")
    client = await connect(discord)
    await client.identify(discord.token)
    ready = await client.dispatch("READY")
    await client.dispatch("GUILD_CREATE")
    discord.send_message(channel_id, user, "one")
    first = await client.dispatch("MESSAGE_CREATE")
    session = {"token": discord.token, "session_id": ready["d"]["session_id"]}
    successor = await RawGatewayClient.connect(ready["d"]["resume_gateway_url"])
    await successor.receive()
    await successor.send(6, {**session, "seq": first["s"]})
    assert [p["t"] for p in await successor.receive_until(lambda p: p.get("t") == "RESUMED")] == [
        "RESUMED"
    ]
    discord.send_message(channel_id, user, "two")
    await successor.dispatch("MESSAGE_CREATE")
    stale = await RawGatewayClient.connect(ready["d"]["resume_gateway_url"])
    await stale.receive()
    await stale.send(6, {**session, "seq": first["s"]})  # from before the successor's RESUMED
    replayed = await stale.receive_until(lambda p: p.get("t") == "RESUMED")
    assert [p["t"] for p in replayed] == ["MESSAGE_CREATE", "RESUMED"]
    assert replayed[0]["d"]["content"] == "two"
    for opened in (client, successor, stale):
        await opened.close()


async def test_resume_failures(discord: emulator.DiscordEmulator) -> None:
    client = await connect(discord)
    await client.identify(discord.token)
    ready = await client.dispatch("READY")
    session_id = ready["d"]["session_id"]
    await client.close(4000)
    unknown = await connect(discord)
    await unknown.send(6, {"token": discord.token, "session_id": "nope", "seq": 1})
    invalid = await unknown.receive()
    assert (invalid["op"], invalid["d"]) == (protocol.Op.INVALID_SESSION, False)
    await unknown.close()
    ahead = await connect(discord)
    await ahead.send(6, {"token": discord.token, "session_id": session_id, "seq": 99})
    assert await ahead.closed_with() == Close.INVALID_SEQ
    bad_token = await connect(discord)
    await bad_token.send(6, {"token": "x", "session_id": session_id, "seq": 1})
    assert await bad_token.closed_with() == Close.AUTHENTICATION_FAILED


@pytest.mark.parametrize("code", [1000, 1001])
async def test_closing_with_1000_or_1001_invalidates_the_session(
    discord: emulator.DiscordEmulator, code: int
) -> None:
    client = await connect(discord)
    await client.identify(discord.token)
    ready = await client.dispatch("READY")
    await client.close(code)
    await discord.wait_for(lambda: not discord.gateway.shards, what="invalidation")
    again = await connect(discord)
    await again.send(6, {"token": discord.token, "session_id": ready["d"]["session_id"], "seq": 1})
    assert (await again.receive())["op"] == protocol.Op.INVALID_SESSION
    await again.close()


async def test_forced_reconnect_and_invalid_session(discord: emulator.DiscordEmulator) -> None:
    client = await connect(discord)
    await client.identify(discord.token)
    await client.dispatch("READY")
    discord.force_reconnect(0)
    assert (await client.receive())["op"] == protocol.Op.RECONNECT
    discord.force_invalid_session(0, resumable=True)
    assert (await client.receive())["d"] is True
    discord.force_invalid_session(0, resumable=False)
    assert (await client.receive())["d"] is False
    assert 0 not in discord.gateway.shards
    await client.close()


async def test_forced_close_code(discord: emulator.DiscordEmulator) -> None:
    client = await connect(discord)
    await client.identify(discord.token)
    await client.dispatch("READY")
    discord.force_close(0, Close.UNKNOWN_ERROR)
    assert await client.closed_with() == Close.UNKNOWN_ERROR


async def test_server_requested_heartbeat(discord: emulator.DiscordEmulator) -> None:
    client = await connect(discord)
    await client.identify(discord.token)
    await client.dispatch("READY")
    discord.gateway.request_heartbeat(0)
    assert (await client.receive())["op"] == protocol.Op.HEARTBEAT
    await client.close()


async def test_message_content_needs_the_intent(discord: emulator.DiscordEmulator) -> None:
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("bob")
    client = await connect(discord)
    await client.identify(
        discord.token, intents=int(protocol.Intent.GUILDS | protocol.Intent.GUILD_MESSAGES)
    )
    await client.dispatch("READY")
    discord.send_message(channel_id, user, "secret words")
    assert (await client.dispatch("MESSAGE_CREATE"))["d"]["content"] == ""
    discord.send_message(channel_id, user, f"<@{discord.world.bot_id}> hello")
    assert (await client.dispatch("MESSAGE_CREATE"))["d"]["content"].endswith("hello")
    await client.close()


async def test_events_need_their_intent(discord: emulator.DiscordEmulator) -> None:
    guild = discord.add_guild("g")
    client = await connect(discord)
    await client.identify(discord.token, intents=int(protocol.Intent.GUILDS))
    await client.dispatch("READY")
    await client.dispatch("GUILD_CREATE")
    assert (
        discord.dispatch("TYPING_START", {"guild_id": guild["id"]}, guild_id=int(guild["id"])) == 0
    )
    assert (
        discord.dispatch("CHANNEL_UPDATE", {"guild_id": guild["id"]}, guild_id=int(guild["id"]))
        == 1
    )
    assert (await client.receive())["t"] == "CHANNEL_UPDATE"
    await client.close()


async def test_request_guild_members_answers_in_chunks(discord: emulator.DiscordEmulator) -> None:
    guild = discord.add_guild("g")
    guild_id = int(guild["id"])
    for index in range(1500):
        discord.add_member(guild_id, discord.add_user(f"user{index}"), announce=False)
    client = await connect(discord)
    await client.identify(
        discord.token, intents=int(protocol.Intent.GUILDS | protocol.Intent.GUILD_MEMBERS)
    )
    await client.dispatch("GUILD_CREATE")
    await client.send(8, {"guild_id": guild["id"], "query": "", "limit": 0, "nonce": "n1"})
    first = await client.dispatch("GUILD_MEMBERS_CHUNK")
    second = await client.dispatch("GUILD_MEMBERS_CHUNK")
    assert (first["d"]["chunk_index"], first["d"]["chunk_count"], first["d"]["nonce"]) == (
        0,
        2,
        "n1",
    )
    assert len(first["d"]["members"]) + len(second["d"]["members"]) == 1502
    await client.send(
        8, {"guild_id": guild["id"], "user_ids": ["1", guild["owner_id"]], "limit": 0}
    )
    by_id = await client.dispatch("GUILD_MEMBERS_CHUNK")
    assert by_id["d"]["not_found"] == ["1"]
    assert [m["user"]["id"] for m in by_id["d"]["members"]] == [guild["owner_id"]]
    assert [c.op for c in discord.records.commands] == [8, 8]
    await client.close()


async def test_voice_state_update_answers_with_voice_events(
    discord: emulator.DiscordEmulator,
) -> None:
    guild = discord.add_guild("g")
    voice = discord.world.add_channel(int(guild["id"]), "voice", kind=2)
    client = await connect(discord)
    await client.identify(
        discord.token, intents=int(protocol.Intent.GUILDS | protocol.Intent.GUILD_VOICE_STATES)
    )
    await client.dispatch("GUILD_CREATE")
    await client.send(
        4,
        {"guild_id": guild["id"], "channel_id": voice["id"], "self_mute": False, "self_deaf": True},
    )
    state = await client.dispatch("VOICE_STATE_UPDATE")
    server = await client.dispatch("VOICE_SERVER_UPDATE")
    assert state["d"]["channel_id"] == voice["id"]
    assert state["d"]["self_deaf"] is True
    assert server["d"]["guild_id"] == guild["id"]
    assert server["d"]["token"]
    [command] = discord.records.commands
    assert command.op == protocol.Op.VOICE_STATE_UPDATE
    await client.close()


async def test_snowflakes_for_a_shard(discord: emulator.DiscordEmulator) -> None:
    for shard in range(7):
        guild = discord.add_guild(shard=(shard, 7))
        assert sharding.shard_for_guild(int(guild["id"]), 7) == shard
    await asyncio.sleep(0)


async def test_guild_create_members_follow_the_presences_intent_and_large_threshold(
    make_emulator: Factory,
) -> None:
    """Gateway Events "Guild Create": without GUILD_PRESENCES only the bot and voice users are
    in ``members``; with it, a guild over ``large_threshold`` (Identify) leaves offline members
    out; ``presences`` only with the intent."""
    discord = await make_emulator(identify_window=0.0)  # one IDENTIFY per case
    guild = discord.add_guild("g")
    guild_id = int(guild["id"])
    voice_channel = discord.world.add_channel(guild_id, "voice", kind=2)
    users = [discord.add_user(f"user{index}") for index in range(60)]
    for user in users:
        discord.add_member(guild_id, user, announce=False)
    discord.world.set_voice_state(guild_id, int(users[0]["id"]), int(voice_channel["id"]), "s")
    bot_id = str(discord.world.application_id)
    expected_few = {bot_id, users[0]["id"]}
    cases = [
        (int(protocol.Intent.GUILDS), None, expected_few, False),
        (int(protocol.Intent.GUILDS | protocol.Intent.GUILD_PRESENCES), 250, None, True),
        (int(protocol.Intent.GUILDS | protocol.Intent.GUILD_PRESENCES), 50, expected_few, True),
    ]
    for intents, threshold, wanted, presences in cases:
        client = await connect(discord)
        d: dict[str, object] = {"token": discord.token, "intents": intents, "properties": {}}
        if threshold is not None:
            d["large_threshold"] = threshold
        await client.send(2, d)
        created = (await client.dispatch("GUILD_CREATE"))["d"]
        ids = {m["user"]["id"] for m in created["members"]}
        everyone = {str(u) for u in discord.world.members[guild_id]}
        assert ids == (wanted if wanted is not None else everyone)
        assert created["member_count"] == len(discord.world.members[guild_id])
        assert bool(created["presences"]) is presences
        await client.close()


async def test_member_chunks_carry_presences_only_when_asked_with_the_intent(
    make_emulator: Factory,
) -> None:
    """Gateway "Request Guild Members": ``presences: true`` needs GUILD_PRESENCES."""
    discord = await make_emulator(identify_window=0.0)  # one IDENTIFY per case
    guild = discord.add_guild("g")
    for intents, asked, carried in [
        (protocol.Intent.GUILDS | protocol.Intent.GUILD_MEMBERS, True, False),
        (protocol.Intent.GUILDS | protocol.Intent.GUILD_PRESENCES, False, False),
        (protocol.Intent.GUILDS | protocol.Intent.GUILD_PRESENCES, True, True),
    ]:
        client = await connect(discord)
        await client.identify(discord.token, intents=int(intents))
        await client.dispatch("GUILD_CREATE")
        await client.send(
            8,
            {"guild_id": guild["id"], "user_ids": [guild["owner_id"]], "presences": asked},
        )
        chunk = (await client.dispatch("GUILD_MEMBERS_CHUNK"))["d"]
        assert ("presences" in chunk) is carried
        await client.close()


async def test_interactions_carry_computed_member_and_app_permissions(
    discord: emulator.DiscordEmulator,
) -> None:
    """Interactions "Interaction Object": ``member.permissions`` are the member's total
    permissions in the channel, overwrites included; ``app_permissions`` the app's."""
    guild = discord.add_guild("g")
    guild_id = int(guild["id"])
    channel = discord.channels_of(guild_id)[0]
    user = discord.add_user("carol")
    send = 1 << 11
    manage_guild = 1 << 5
    channel["permission_overwrites"] = [
        {"id": user["id"], "type": 1, "allow": str(manage_guild), "deny": str(send)}
    ]
    carol = discord.send_interaction(int(channel["id"]), user, "ping").payload
    held = int(carol["member"]["permissions"])
    assert held & manage_guild
    assert not held & send
    assert int(carol["app_permissions"]) & send
    owner = discord.world.users[int(guild["owner_id"])]
    boss = discord.send_interaction(int(channel["id"]), owner, "ping").payload
    assert int(boss["member"]["permissions"]) & manage_guild  # the owner has every permission


async def test_guild_create_lists_active_threads_apart_from_channels(
    discord: emulator.DiscordEmulator,
) -> None:
    guild = discord.add_guild("g")
    guild_id = int(guild["id"])
    parent = discord.channels_of(guild_id)[0]
    owner = discord.world.users[int(guild["owner_id"])]
    thread = discord.world.add_thread(int(parent["id"]), owner, "t")
    payload = discord.world.guild_create_payload(guild_id)
    # Gateway Events > Guild Create: active threads in "threads", channels in "channels".
    assert [c["id"] for c in payload["channels"]] == [parent["id"]]
    assert [t["id"] for t in payload["threads"]] == [thread["id"]]
    assert payload["threads"][0]["parent_id"] == parent["id"]
    assert "permission_overwrites" not in payload["threads"][0]
    await asyncio.sleep(0)
