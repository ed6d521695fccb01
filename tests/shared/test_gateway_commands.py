"""Gateway commands on the wire: encoded and decoded the same way by workers and gateways,
and validated against Discord's payloads for ops 3, 4 and 8 (``shared.gateway_commands``).

That a gateway sends them to Discord is ``tests/gateway/test_gateway_commands.py``."""

from __future__ import annotations

import typing

import orjson
import pytest

from shared import gateway_commands
from shared.gateway_commands import CommandError, GatewayCommand

VOICE: typing.Final = {"guild_id": "41", "channel_id": "42", "self_mute": False, "self_deaf": True}
PRESENCE: typing.Final = {
    "status": "idle",
    "afk": False,
    "since": None,
    "activities": [{"name": "music", "type": 2}],
}
MEMBERS: typing.Final = {"guild_id": "41", "query": "ab", "limit": 0}


@pytest.mark.parametrize(
    "command",
    [
        GatewayCommand(gateway_commands.OP_VOICE_STATE_UPDATE, 3, VOICE),
        GatewayCommand(gateway_commands.OP_VOICE_STATE_UPDATE, 0, {**VOICE, "channel_id": None}),
        GatewayCommand(gateway_commands.OP_PRESENCE_UPDATE, 1, PRESENCE),
        GatewayCommand(gateway_commands.OP_REQUEST_GUILD_MEMBERS, 2, MEMBERS),
        GatewayCommand(
            gateway_commands.OP_REQUEST_GUILD_MEMBERS,
            2,
            {"guild_id": 41, "user_ids": ["1", 2], "nonce": "n" * 32, "presences": True},
        ),
    ],
)
def test_a_valid_command_survives_the_wire(command: GatewayCommand) -> None:
    body = gateway_commands.encode(command)
    assert orjson.loads(body) == {
        "v": 1,
        "op": command.op,
        "shard": command.shard_id,
        "d": command.d,
    }
    assert gateway_commands.decode(body) == command


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "version 1 command object"),
        (b'{"v": 2, "op": 4, "shard": 0, "d": {}}', "version 1 command object"),
        (b'{"v": 1, "op": "4", "shard": 0, "d": {}}', "'op' and 'shard' integers"),
        (b'{"v": 1, "op": 4, "shard": -1, "d": {}}', "'op' and 'shard' integers"),
        (b'{"v": 1, "op": 4, "shard": true, "d": {}}', "'op' and 'shard' integers"),
        (b'{"v": 1, "op": 4, "shard": 0, "d": []}', "'op' and 'shard' integers"),
        (b'{"v": 1, "op": 2, "shard": 0, "d": {}}', "op 2 is not a gateway command"),
    ],
)
def test_a_malformed_envelope_is_refused_with_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(CommandError, match=reason):
        gateway_commands.decode(body)


@pytest.mark.parametrize(
    ("op", "d", "reason"),
    [
        (4, {**VOICE, "guild_id": "4x"}, "'guild_id' must be a snowflake"),
        (4, {**VOICE, "guild_id": True}, "'guild_id' must be a snowflake"),
        (4, {k: v for k, v in VOICE.items() if k != "channel_id"}, "'channel_id'"),
        (4, {**VOICE, "self_mute": 0}, "'self_mute' must be true or false"),
        (3, {**PRESENCE, "status": "away"}, "'status' must be one of"),
        (3, {**PRESENCE, "afk": None}, "'afk' must be true or false"),
        (3, {**PRESENCE, "since": True}, "'since' must be a unix time"),
        (3, {**PRESENCE, "activities": [{"name": "x"}]}, "'activities' must be a list"),
        (8, {"guild_id": "41"}, "exactly one of 'query' and 'user_ids'"),
        (8, {**MEMBERS, "user_ids": ["1"]}, "exactly one of 'query' and 'user_ids'"),
        (8, {**MEMBERS, "limit": -1}, "'limit' must be an integer from 0 to 100"),
        (8, {**MEMBERS, "limit": False}, "'limit' must be an integer from 0 to 100"),
        (8, {**MEMBERS, "limit": 101}, "'limit' must be an integer from 0 to 100"),
        (8, {"guild_id": "41", "user_ids": ["1"], "limit": 5}, "'limit' goes with 'query'"),
        (8, {**MEMBERS, "guild_id": "١٢٣"}, "'guild_id' must be a snowflake"),
        (8, {**MEMBERS, "guild_id": "²"}, "'guild_id' must be a snowflake"),
        (8, {**MEMBERS, "guild_id": str(1 << 64)}, "'guild_id' must be a snowflake"),
        (3, {**PRESENCE, "since": 10**18}, "'since' must be a unix time"),
        (3, {**PRESENCE, "since": -1}, "'since' must be a unix time"),
        (3, {**PRESENCE, "activities": [{"name": "x", "type": 99}]}, "'activities' must be"),
        (8, {"guild_id": "41", "user_ids": []}, "'user_ids' must hold 1 to 100"),
        (8, {"guild_id": "41", "user_ids": list(range(1, 102))}, "'user_ids' must hold 1 to 100"),
        (8, {"guild_id": "41", "user_ids": ["1", "x"]}, "'user_id' must be a snowflake"),
        (8, {**MEMBERS, "nonce": "n" * 33}, "'nonce' must be a string of at most 32 bytes"),
        (8, {**MEMBERS, "presences": "yes"}, "'presences' must be true or false"),
    ],
)
def test_a_payload_discord_would_reject_is_refused_with_its_reason(
    op: int, d: dict[str, typing.Any], reason: str
) -> None:
    with pytest.raises(CommandError, match=reason):
        gateway_commands.validate(GatewayCommand(op, 0, d))
    body = orjson.dumps({"v": 1, "op": op, "shard": 0, "d": d})
    with pytest.raises(CommandError, match=reason):
        gateway_commands.decode(body)


def test_a_single_user_id_counts_as_a_list_of_one() -> None:
    one = GatewayCommand(8, 0, {"guild_id": "41", "user_ids": "7"})
    assert gateway_commands.decode(gateway_commands.encode(one)) == one
    with pytest.raises(CommandError, match="'user_id' must be a snowflake"):
        gateway_commands.validate(GatewayCommand(8, 0, {"guild_id": "41", "user_ids": "x"}))


def test_replies_say_ok_or_the_refusal() -> None:
    refusal = gateway_commands.CommandRefusal(
        gateway_commands.RefusalReason.NOT_HELD, "no shard 9 here"
    )
    assert orjson.loads(gateway_commands.encode_reply()) == {"ok": True}
    assert orjson.loads(gateway_commands.encode_reply(refusal)) == {
        "ok": False,
        "reason": "not_held",
        "error": "no shard 9 here",
    }
    assert gateway_commands.decode_reply(gateway_commands.encode_reply()) is None
    assert gateway_commands.decode_reply(gateway_commands.encode_reply(refusal)) == refusal
    unreadable = gateway_commands.decode_reply(b"junk")
    assert unreadable is not None
    assert unreadable.reason is gateway_commands.RefusalReason.FAILED


def test_members_requests_need_the_shards_intents() -> None:
    members = GatewayCommand(8, 0, {"guild_id": "41", "query": "", "limit": 0, "presences": True})
    everything = gateway_commands.INTENT_GUILD_MEMBERS | gateway_commands.INTENT_GUILD_PRESENCES
    gateway_commands.validate(members, intents=everything)
    with pytest.raises(CommandError, match="GUILD_PRESENCES"):
        gateway_commands.validate(members, intents=gateway_commands.INTENT_GUILD_MEMBERS)
    with pytest.raises(CommandError, match="GUILD_MEMBERS"):
        gateway_commands.validate(
            GatewayCommand(8, 0, {"guild_id": "41", "query": "", "limit": 0}), intents=0
        )


def test_an_oversized_command_is_refused_unread() -> None:
    body = b"{" + b" " * gateway_commands.MAX_COMMAND_BYTES + b"}"
    with pytest.raises(CommandError, match="bytes"):
        gateway_commands.decode(body)
