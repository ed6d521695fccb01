"""Commands where the faithful emulator differs from a naive one: DMs (shard 0 only), threads
(their parent's overwrites), modals (only a first response, never after the auto-deferral)."""

from __future__ import annotations

import asyncio
import typing

import hikari

from tests.worker.test_commands import commands_bot, replicas, replies
from worker import bot as bot_module
from worker import interactions
from worker.commands import Context  # noqa: TC001 - the command signature is read at runtime
from worker.plugins import core

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack


async def test_a_dm_command_reaches_one_worker_through_shard_0_and_is_answered_in_the_dm(
    stack: Stack,
) -> None:
    discord = stack.discord
    discord.add_guild("g")
    user = discord.add_user("dm-user")
    dm = discord.open_dm(user)
    channel_id = int(dm["id"])
    ran: list[int] = []

    def make_bot() -> bot_module.Bot:
        bot = bot_module.Bot()
        core.setup(bot)

        @bot.command(description="Answers in DMs")
        async def hello(ctx: Context) -> None:
            ran.append(id(bot))
            await ctx.respond("hello in private")

        return bot

    async with replicas(stack, 2, make_bot), stack.gateway(SHARD_COUNT="2", SHARD_IDS="0,1"):
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1])
        message = discord.send_message(channel_id, user, "!hello")
        await discord.wait_for(lambda: replies(discord, channel_id) == ["hello in private"])
        await asyncio.sleep(1.0)  # room for a second delivery to show up, if there were one
    assert len(ran) == 1
    assert replies(discord, channel_id) == ["hello in private"]

    def took(shard_id: int) -> bool:
        session = discord.gateway.sessions.layouts[(shard_id, 2)]
        return any(
            p["t"] == "MESSAGE_CREATE" and p["d"]["id"] == message["id"] for p in session.buffer
        )

    assert took(0)
    assert not took(1)  # Gateway > Sharding: DMs go to shard 0 only


async def test_a_thread_takes_its_parents_overwrites(stack: Stack) -> None:
    discord = stack.discord
    guild = discord.add_guild("g", channels=2)
    guild_id = int(guild["id"])
    owner = discord.world.users[int(guild["owner_id"])]
    denying, plain = discord.channels_of(guild_id)
    role = {
        "id": str(discord.world.snowflakes.next()),
        "name": "banners",
        "color": 0,
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": 1,
        "permissions": str(int(hikari.Permissions.BAN_MEMBERS)),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }
    guild["roles"].append(role)
    denying["permission_overwrites"] = [
        {
            "id": role["id"],
            "type": 0,
            "allow": "0",
            "deny": str(int(hikari.Permissions.BAN_MEMBERS)),
        }
    ]
    user = discord.add_user("banner")
    discord.world.add_member(guild_id, user, roles=[int(role["id"])])
    async with replicas(stack, 1, commands_bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        denied_thread = int(discord.create_thread(int(denying["id"]), user, "t1")["id"])
        allowed_thread = int(discord.create_thread(int(plain["id"]), user, "t2")["id"])
        await asyncio.sleep(0.5)  # the gateway caches both threads
        discord.send_message(denied_thread, user, f"!ban <@{owner['id']}>")
        discord.send_message(allowed_thread, user, f"!ban <@{owner['id']}>")
        await discord.wait_for(
            lambda: (
                len(replies(discord, denied_thread)) == len(replies(discord, allowed_thread)) == 1
            )
        )
        private = discord.create_thread(int(plain["id"]), user, "p", private=True, add_bot=True)
        hidden = discord.create_thread(int(plain["id"]), user, "h", private=True)
    sent = [
        p["d"] for p in discord.gateway.sessions.layouts[(0, 1)].buffer if p["t"] == "THREAD_CREATE"
    ]
    assert [(d["type"], d["newly_created"], "member" in d) for d in sent] == [
        (11, True, False),
        (11, True, False),
        (12, True, True),
    ]  # Gateway Events > Thread Create; the private thread the bot is not in is not sent
    assert sent[0]["parent_id"] == denying["id"]
    assert "permission_overwrites" not in sent[0]
    assert sent[2]["member"]["user_id"] == str(discord.world.bot_id)
    assert sent[2]["thread_metadata"]["invitable"] is True
    assert hidden["id"] not in {d["id"] for d in sent}
    assert private["id"] == sent[2]["id"]
    [refused] = replies(discord, denied_thread)
    assert "You need the **Ban Members** permission" in refused
    assert replies(discord, allowed_thread) == [f"banned {owner['id']}"]


def modal_bot(submitted: list[str]) -> bot_module.Bot:
    bot = bot_module.Bot()
    core.setup(bot)

    @bot.command(description="Asks in a form", opens_modal=True)
    async def form(ctx: Context) -> None:
        await asyncio.sleep(2.5)  # past the 2 s at which the worker defers other commands
        assert ctx.interaction is not None
        await ctx.interaction.create_modal_response(
            "Feedback",
            "feedback-form",
            components=[hikari.impl.ModalActionRowBuilder().add_text_input("answer", "Answer")],
        )

    @bot.command(description="Opens a form late, undeclared")
    async def late(ctx: Context) -> None:
        await asyncio.sleep(2.5)
        assert ctx.interaction is not None
        try:
            await ctx.interaction.create_modal_response(
                "Late",
                "late-form",
                components=[hikari.impl.ModalActionRowBuilder().add_text_input("a", "A")],
            )
        except interactions.ModalAfterDeferralError:
            submitted.append("refused before Discord")
            raise

    @bot.listen(hikari.InteractionCreateEvent)
    async def on_submit(event: hikari.InteractionCreateEvent) -> None:
        interaction = event.interaction
        if isinstance(interaction, hikari.ModalInteraction):
            value = interaction.components[0].components[0].value
            submitted.append(f"{interaction.custom_id}:{value}")
            await interaction.create_initial_response(
                hikari.ResponseType.MESSAGE_CREATE, f"thanks for {value!r}"
            )

    return bot


async def test_a_slow_handler_still_opens_a_modal_and_its_submit_reaches_a_handler(
    stack: Stack,
) -> None:
    discord = stack.discord
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("filler")
    submitted: list[str] = []
    async with (
        replicas(stack, 1, lambda: modal_bot(submitted)) as [replica],
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        opened = discord.send_interaction(channel_id, user, "form")
        await discord.wait_for(lambda: opened.response is not None, timeout=10)
        assert opened.response_type == 9  # Interaction Response Type 9 MODAL, not a deferral
        assert opened.response is not None
        assert opened.response["data"]["custom_id"] == "feedback-form"
        assert opened.response["data"]["title"] == "Feedback"
        assert replica.bot.interactions.auto_deferred == 0
        submit = discord.submit_modal(opened, user, {"answer": "great"})
        await discord.wait_for(lambda: submit.response is not None, timeout=10)
    assert submitted == ["feedback-form:great"]
    assert submit.payload["type"] == 5  # MODAL_SUBMIT
    assert submit.response is not None
    assert submit.response["data"]["content"] == "thanks for 'great'"
    rejected = [c for c in discord.records.rest if c.path.endswith("/callback") and c.status >= 400]
    assert rejected == []  # the 2 s auto-defer never hit the answered interaction


async def test_a_modal_after_the_auto_deferral_is_refused_before_it_reaches_discord(
    stack: Stack,
) -> None:
    discord = stack.discord
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("late")
    submitted: list[str] = []
    async with (
        replicas(stack, 1, lambda: modal_bot(submitted)) as [replica],
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        opened = discord.send_interaction(channel_id, user, "late")
        await discord.wait_for(lambda: submitted == ["refused before Discord"], timeout=10)
        assert replica.bot.interactions.auto_deferred == 1
    assert opened.response_type == 5  # the deferral stands: Discord's rule, not a 400
    calls = [c for c in discord.records.rest if c.path.endswith("/callback")]
    assert [c.status < 400 for c in calls] == [True]  # one deferral, no refused modal
