"""The emulated application commands: Discord's rules for context menus and localisations,
and the ``resolved`` data of the interactions it builds."""

from __future__ import annotations

import typing

import aiohttp
import pytest

from tests.playground.test_rest import Api

if typing.TYPE_CHECKING:
    from playground.discord import emulator

Json = dict[str, typing.Any]


@pytest.fixture
async def api(discord: emulator.DiscordEmulator) -> typing.AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(discord, session)


async def test_context_menu_commands_have_free_names_and_no_description(api: Api) -> None:
    path = f"/applications/{api.discord.world.application_id}/commands"
    good = [{"name": "Report user", "type": 2}, {"name": "Quote This", "type": 3}]
    status, created, _ = await api.call("PUT", path, good)
    assert status == 200
    assert [(c["name"], c["type"], c["description"]) for c in created] == [
        ("Report user", 2, ""), ("Quote This", 3, ""),
    ]  # fmt: skip
    for bad in (
        {"name": "Report", "type": 2, "description": "not allowed"},
        {"name": "x" * 33, "type": 3},
        {
            "name": "Has options",
            "type": 2,
            "options": [{"type": 3, "name": "a", "description": "a"}],
        },
        {"name": "Spaces not allowed", "type": 1, "description": "slash names have none"},
    ):
        status, body, _ = await api.call("POST", path, bad)
        assert status == 400, bad
        assert body["code"] == 50035


async def test_localisations_are_validated_stored_and_listed_as_documented(api: Api) -> None:
    path = f"/applications/{api.discord.world.application_id}/commands"
    command = {
        "name": "birthday", "type": 1, "description": "Wish a friend a happy birthday",
        "name_localizations": {"zh-CN": "生日", "el": "γενέθλια", "fr": "birthday"},
        "description_localizations": {"zh-CN": "祝你朋友生日快乐"},
        "options": [{
            "name": "age", "type": 4, "description": "Your friend's age",
            "name_localizations": {"zh-CN": "岁数"},
        }],
    }  # fmt: skip
    status, created, _ = await api.call("POST", path, command)
    assert status == 200
    # "Any localized values that are identical to the default will be ignored."
    assert created["name_localizations"] == {"zh-CN": "生日", "el": "γενέθλια"}
    assert created["options"][0]["name_localizations"] == {"zh-CN": "岁数"}
    _, listed, _ = await api.call("GET", path)
    assert "name_localizations" not in listed[0]
    _, full, _ = await api.call("GET", path + "?with_localizations=true")
    assert full[0]["description_localizations"] == {"zh-CN": "祝你朋友生日快乐"}

    for field, value in (
        ("name_localizations", {"xx-XX": "nom"}),  # not a Discord locale
        ("name_localizations", {"fr": "Anniversaire"}),  # uppercase in a CHAT_INPUT name
        ("description_localizations", {"fr": "x" * 101}),
    ):
        status, body, _ = await api.call("POST", path, {**command, field: value})
        assert status == 400, (field, value)
        assert field in body["errors"]
    clash = {**command, "options": [
        {"name": "age", "type": 4, "description": "a"},
        {"name": "name", "type": 3, "description": "n", "name_localizations": {"fr": "age"}},
    ]}  # fmt: skip
    status, _, _ = await api.call("POST", path, clash)
    assert status == 400  # a localised option name equal to another option's default name


def test_options_and_context_menus_carry_their_resolved_objects(
    discord: emulator.DiscordEmulator,
) -> None:
    guild = discord.add_guild("g")
    guild_id = int(guild["id"])
    channel_id = int(discord.channels_of(guild_id)[0]["id"])
    alice, bob = discord.add_user("alice"), discord.add_user("bob")
    discord.world.add_member(guild_id, bob)
    role = guild["roles"][0]
    file = discord.upload("cat.png", "image/png", 1234)
    interaction = discord.send_interaction(
        channel_id, alice, "inspect",
        [{"name": "who", "type": 6, "value": bob["id"]},
         {"name": "where", "type": 7, "value": str(channel_id)},
         {"name": "role", "type": 8, "value": role["id"]},
         {"name": "any", "type": 9, "value": role["id"]},
         {"name": "file", "type": 11, "value": file["id"]}],
    )  # fmt: skip
    resolved = interaction.payload["data"]["resolved"]
    assert resolved["users"][bob["id"]]["username"] == "bob"
    member = resolved["members"][bob["id"]]
    assert {"user", "deaf", "mute"}.isdisjoint(member)
    assert "permissions" in member
    assert set(resolved["channels"][str(channel_id)]) == {"id", "name", "type", "permissions"}
    assert resolved["roles"][role["id"]]["id"] == role["id"]
    assert resolved["attachments"][file["id"]]["filename"] == "cat.png"

    message = discord.send_message(channel_id, bob, "quote me")
    quoted = discord.run_message_command(message, alice, "Quote")
    data = quoted.payload["data"]
    assert (data["type"], data["target_id"]) == (3, message["id"])
    assert data["resolved"]["messages"][message["id"]]["content"] == "quote me"
    reported = discord.run_user_command(channel_id, alice, "Report user", bob)
    assert reported.payload["data"]["resolved"]["members"][bob["id"]]["roles"] == []
    with pytest.raises(ValueError, match="nothing with id"):
        discord.send_interaction(channel_id, alice, "x", [{"name": "r", "type": 8, "value": "1"}])
