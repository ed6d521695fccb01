"""Context menus, the new option types, error handlers, and component and modal routes, on
real worker replicas: the emulator, a real gateway, RabbitMQ, Redis and MongoDB."""

from __future__ import annotations

import typing

from tests.worker import plugin_commands_routes
from tests.worker.test_commands import replicas, replies, setup_guild
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from playground.discord import emulator, rest
    from tests.gateway.conftest import Stack

Json = dict[str, typing.Any]


def routes_bot() -> bot_module.Bot:
    bot = bot_module.Bot()
    plugin_commands_routes.setup(bot)
    return bot


async def answered(discord: emulator.DiscordEmulator, interaction: rest.Interaction) -> Json:
    await discord.wait_for(lambda: interaction.response is not None, what="a response")
    assert interaction.response is not None
    return interaction.response


async def test_user_and_message_context_menus_get_their_target(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    alice, bob = discord.add_user("alice"), discord.add_user("bob")
    async with replicas(stack, 1, routes_bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        message = discord.send_message(channel_id, bob, "a wise thing")
        report = discord.run_user_command(channel_id, alice, "Report user", bob)
        quote = discord.run_message_command(message, alice, "Quote")
        reported, quoted = await answered(discord, report), await answered(discord, quote)
    assert reported["data"]["content"] == "reported bob"
    assert reported["data"]["flags"] & 64  # ephemeral
    assert quoted["data"]["content"] == "> a wise thing"


async def test_channel_mentionable_role_and_attachment_options_on_both_surfaces(
    stack: Stack,
) -> None:
    discord = stack.discord
    guild_id, channel_id, _ = setup_guild(stack)
    role = discord.world.guilds[guild_id]["roles"][0]
    alice, bob = discord.add_user("alice"), discord.add_user("bob")
    discord.world.add_member(guild_id, bob)
    file = discord.upload("cat.png", "image/png", 1234)
    async with replicas(stack, 1, routes_bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        slash = discord.send_interaction(
            channel_id, alice, "inspect",
            [{"name": "where", "type": 7, "value": str(channel_id)},
             {"name": "someone", "type": 9, "value": role["id"]},
             {"name": "role", "type": 8, "value": role["id"]},
             {"name": "file", "type": 11, "value": file["id"]}],
        )  # fmt: skip
        response = await answered(discord, slash)
        discord.send_message(channel_id, alice, f"!inspect <#{channel_id}> <@{bob['id']}>")
        discord.send_message(channel_id, alice, f"!inspect <#{channel_id}> <#{channel_id}>")
        photo = discord.upload("dog.jpg", "image/jpeg", 99)
        discord.send_message(
            channel_id, alice, f"!inspect <#{channel_id}> <@&{role['id']}>", files=[photo]
        )
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 4, what="replies")
    assert response["data"]["content"] == (
        f"channel channel-0; role {role['id']}; role @everyone; file cat.png 1234"
    )
    prefix = replies(discord, channel_id)[1:]
    assert f"channel channel-0; user {bob['id']}" in prefix
    assert any("`someone` must be a user or role mention or id" in r for r in prefix)
    # A prefix command's attachment options take the message's files.
    assert f"channel channel-0; role {role['id']}; file dog.jpg 99" in prefix


async def test_a_commands_own_handler_then_the_bots_then_the_default(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    alice = discord.add_user("alice")
    async with replicas(stack, 1, routes_bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        own = discord.send_interaction(channel_id, alice, "fragile")
        passed_on = discord.send_interaction(
            channel_id, alice, "fragile", [{"name": "handled", "type": 5, "value": False}]
        )
        own_answer, bots_answer = await answered(discord, own), await answered(discord, passed_on)
    assert own_answer["data"]["content"] == "handled here: expected"
    assert bots_answer["data"]["content"] == "the bot's handler saw KeyError"


async def test_a_click_is_routed_by_a_replica_that_never_saw_the_message(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    alice, bob = discord.add_user("alice"), discord.add_user("bob")
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        async with replicas(stack, 1, routes_bot):
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            poll = discord.send_interaction(
                channel_id, alice, "poll", [{"name": "topic", "type": 3, "value": "lunch"}]
            )
            await answered(discord, poll)
        # The replica that sent the poll is gone; a new one (no shared memory) takes the click.
        async with replicas(stack, 1, routes_bot) as [second]:
            assert poll.original is not None
            click = discord.click(poll.original, bob, "vote:lunch:no")
            await answered(discord, click)
            await discord.wait_for(lambda: "bob said no" in poll.original["content"])
            assert second.bot.commands.failures == 0
    assert click.response_type == 7  # UPDATE_MESSAGE: the poll itself changed


async def test_a_click_opens_a_modal_and_its_typed_submission_is_routed(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    alice = discord.add_user("alice")
    async with (
        replicas(stack, 2, routes_bot),
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        poll = discord.send_interaction(
            channel_id, alice, "poll", [{"name": "topic", "type": 3, "value": "tea"}]
        )
        await answered(discord, poll)
        assert poll.original is not None
        rate = discord.click(poll.original, alice, "rate:tea")
        opened = await answered(discord, rate)
        assert rate.response_type == 9  # a modal, never auto-deferred before it
        assert opened["data"]["custom_id"] == "feedback:tea"
        bad = discord.submit_modal(rate, alice, {"rating": "9"})
        good = discord.submit_modal(rate, alice, {"rating": "4"})
        bad_answer, good_answer = await answered(discord, bad), await answered(discord, good)
        slash = discord.send_interaction(channel_id, alice, "feedback")
        await answered(discord, slash)
        assert slash.response_type == 9
        general = discord.submit_modal(slash, alice, {"rating": "5", "text": "fine"})
        general_answer = await answered(discord, general)
    assert bad_answer["data"]["content"] == "`rating` must be at most 5."
    assert bad_answer["data"]["flags"] & 64
    assert good_answer["data"]["content"] == "thanks: tea rated 4"
    assert general_answer["data"]["content"] == "thanks: general rated 5 fine"


async def test_a_slow_answer_to_a_commands_modal_is_deferred_as_a_command_is(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    alice = discord.add_user("alice")
    async with (
        replicas(stack, 1, routes_bot) as [replica],
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        survey = discord.send_interaction(channel_id, alice, "survey")
        await answered(discord, survey)
        submitted = discord.submit_modal(survey, alice, {"answer": "yes"})
        await discord.wait_for(
            lambda: (
                submitted.original is not None and submitted.original["content"] == "noted: yes"
            ),
            what="the deferred answer",
        )
        assert replica.bot.interactions.auto_deferred == 1
    # No message to update: DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, not DEFERRED_UPDATE_MESSAGE.
    assert submitted.response_type == 5
