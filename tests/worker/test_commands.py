"""Commands on one and several worker replicas: the emulator, a real gateway, RabbitMQ, Redis,
MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import typing

import hikari

from shared import config
from worker import app
from worker import bot as bot_module
from worker.commands import Context, Cooldown, MaxConcurrency, option
from worker.commands import router as router_module
from worker.plugins import core

if typing.TYPE_CHECKING:
    from playground.discord import emulator
    from tests.gateway.conftest import Stack


def commands_bot() -> bot_module.Bot:
    bot = bot_module.Bot()
    core.setup(bot)

    @bot.command(description="Says it again")
    async def echo(
        ctx: Context,
        times: int = option("how many times", 1, min=1, max=3),
        text: str = option("what to say", "nothing"),
    ) -> None:
        await ctx.respond(" ".join([text] * times))

    @bot.command(description="Bans", user_permissions=hikari.Permissions.BAN_MEMBERS)
    async def ban(ctx: Context, member: hikari.Member) -> None:
        await ctx.respond(f"banned {member.id}")

    config_group = bot.group("config", description="Server configuration")

    @bot.command(description="Shows the configuration", group=config_group)
    async def show(ctx: Context) -> None:
        await ctx.respond("config shown")

    @bot.command("set", description="Sets a value", group=config_group)
    async def set_(ctx: Context, key: str, value: str) -> None:
        await ctx.respond(f"{key}={value}")

    async def fruits(interaction: hikari.AutocompleteInteraction, typed: str) -> list[str]:
        del interaction
        return [f for f in ("apple", "apricot", "banana") if f.startswith(typed)]

    @bot.command(description="Picks a fruit")
    async def pick(ctx: Context, fruit: str = option("which", autocomplete=fruits)) -> None:
        await ctx.respond(fruit)

    @bot.command(description="One at a time", max_concurrency=MaxConcurrency(1, "global"))
    async def slow(ctx: Context) -> None:
        await asyncio.sleep(4)  # long enough that all three arrive while it runs, even on a busy CI
        await ctx.respond("done")

    @bot.command(description="Twice a minute, for everyone", cooldown=Cooldown(2, 60, "global"))
    async def limited(ctx: Context) -> None:
        await ctx.respond("ok")

    @bot.command(description="Thinks longer than Discord waits, then answers privately")
    async def think(ctx: Context) -> None:
        await ctx.defer(ephemeral=True)
        await asyncio.sleep(3.5)  # past the 3 s a response must come within
        await ctx.respond("only you see this")
        await ctx.respond("and this follows up")

    return bot


@contextlib.asynccontextmanager
async def replicas(
    stack: Stack, count: int, make_bot: typing.Callable[[], bot_module.Bot] | None = None
) -> typing.AsyncIterator[list[app.WorkerApp]]:
    started: list[app.WorkerApp] = []
    try:
        for _ in range(count):
            bot = (make_bot or commands_bot)()
            replica = app.WorkerApp(config.WorkerSettings.from_env(stack.env()), bot)
            await replica.start()
            started.append(replica)
        yield started
    finally:
        for replica in started:
            await replica.close()


def replies(discord: emulator.DiscordEmulator, channel_id: int) -> list[str]:
    bot_id = str(discord.world.bot_id)
    return [
        m["content"]
        for m in discord.world.messages.get(channel_id, {}).values()
        if m["author"]["id"] == bot_id
    ]


def setup_guild(stack: Stack) -> tuple[int, int, dict[str, typing.Any]]:
    guild = stack.discord.add_guild("g")
    channel_id = int(stack.discord.channels_of(int(guild["id"]))[0]["id"])
    owner = stack.discord.world.users[int(guild["owner_id"])]
    return int(guild["id"]), channel_id, owner


async def test_one_command_as_prefix_and_slash_with_typed_options(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    user = discord.add_user("alice")
    async with replicas(stack, 1), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, user, '!echo 2 "hello there"')
        await discord.wait_for(lambda: replies(discord, channel_id) == ["hello there hello there"])
        interaction = discord.send_interaction(
            channel_id, user, "echo",
            [{"name": "text", "type": 3, "value": "hi"}, {"name": "times", "type": 4, "value": 3}],
        )  # fmt: skip
        await discord.wait_for(lambda: interaction.response is not None)
    assert interaction.response_type == 4
    assert interaction.response is not None
    assert interaction.response["data"]["content"] == "hi hi hi"


async def test_a_slow_command_defers_privately_and_answers_later(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    user = discord.add_user("dana")
    async with replicas(stack, 1) as [replica], stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        interaction = discord.send_interaction(channel_id, user, "think")
        await discord.wait_for(lambda: len(interaction.followups) == 1, timeout=15)
        assert replica.bot.interactions.auto_deferred == 0  # it deferred by itself, in time
    assert interaction.response is not None
    assert interaction.response["type"] == 5
    assert interaction.response["data"]["flags"] == hikari.MessageFlag.EPHEMERAL
    assert interaction.original is not None
    assert interaction.original["content"] == "only you see this"
    assert interaction.original["flags"] & hikari.MessageFlag.EPHEMERAL  # as deferred
    assert interaction.followups[0]["content"] == "and this follows up"
    answer = next(c for c in discord.records.rest if c.path.endswith("/callback"))
    assert answer.at - interaction.created_at_wall < 3.0


async def test_bad_arguments_get_a_helpful_reply(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    user = discord.add_user("bob")
    async with replicas(stack, 1), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, user, "!echo lots")
        discord.send_message(channel_id, user, "!echo 9 x")
        discord.send_message(channel_id, user, "!ban nobody")
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 3)
    said = sorted(replies(discord, channel_id))
    assert any("`times` must be a whole number, not `lots`" in r and "Usage: `!echo" in r
               for r in said)  # fmt: skip
    assert any("`times` must be at most 3" in r for r in said)
    assert any("`member` must be a user mention or id" in r for r in said)


async def test_a_failed_permission_check_answers_and_the_owner_passes(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, owner = setup_guild(stack)
    user = discord.add_user("carol")
    async with replicas(stack, 1), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, owner, "hello")  # the owner joins (cache: member add)
        discord.send_message(channel_id, user, "hi")
        await asyncio.sleep(0.5)
        discord.send_message(channel_id, user, f"!ban <@{owner['id']}>")
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 1)
        discord.send_message(channel_id, owner, f"!ban <@{user['id']}>")
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 2)
    first, second = replies(discord, channel_id)
    assert "You need the **Ban Members** permission" in first
    assert second == f"banned {user['id']}"


async def test_a_cooldown_holds_exactly_across_three_replicas(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    users = [discord.add_user(f"u{i}") for i in range(9)]
    async with replicas(stack, 3) as three, stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        before = [r.consumer.stats.consumed if r.consumer else 0 for r in three]
        for count, user in enumerate(users, 1):
            discord.send_message(channel_id, user, "!limited")
            # One answered before the next is sent: separate broker messages, which the
            # broker hands to the replicas in turn.
            await discord.wait_for(lambda n=count: len(replies(discord, channel_id)) == n)
        took = [
            (r.consumer.stats.consumed if r.consumer else 0) - b
            for r, b in zip(three, before, strict=True)
        ]
    assert sum(1 for n in took if n) >= 2, took  # the burst really was spread
    said = replies(discord, channel_id)
    assert said.count("ok") == 2
    assert sum("Slow down" in r for r in said) == 7


async def test_a_prefix_set_on_one_replica_is_used_on_another_at_once(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, owner = setup_guild(stack)
    async with replicas(stack, 2) as (first, second), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, owner, "!prefix ?")
        await discord.wait_for(lambda: replies(discord, channel_id) == ["Prefix set to `?`."])
        # The replica that wrote it (the bot's own reply may have reached either one).
        assert first.bot.settings is not None
        setter, other = (
            (first, second) if first.bot.settings.stats.mongo_writes else (second, first)
        )
        assert setter.consumer is not None
        assert other.consumer is not None
        await setter.consumer.stop_intake()  # what follows can only reach the other replica
        handled = other.consumer.stats.consumed
        discord.send_message(channel_id, owner, "?echo 1 m0")
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 2, timeout=20)
        assert other.consumer.stats.consumed > handled
    assert replies(discord, channel_id) == ["Prefix set to `?`.", "m0"]


def prompting_bot() -> bot_module.Bot:
    bot = commands_bot()

    @bot.command(description="Asks your name")
    async def ask(ctx: Context) -> None:
        answer = await ctx.prompt(
            "What's your name?", timeout=10, check=lambda a: not a.content.startswith("um")
        )
        await ctx.respond(f"Hello {answer.content}")

    @bot.command(description="Asks to confirm")
    async def confirm(ctx: Context) -> None:
        row = ctx.bot.rest.build_message_action_row().add_interactive_button(
            hikari.ButtonStyle.PRIMARY, "confirm-yes", label="Yes"
        )
        await ctx.respond("Sure?", component=row)
        click = await ctx.wait_for_component(["confirm-yes"], timeout=10)
        await ctx.respond(f"confirmed by {click.user_id}")

    return bot


async def waiting_replica(stack: Stack, replicas_: list[app.WorkerApp], key: str) -> app.WorkerApp:
    """The replica whose handler waits, once the wait is registered in Redis."""
    for _ in range(200):
        if await stack.redis.exists(key):
            break
        await asyncio.sleep(0.05)
    for replica in replicas_:
        prompts = replica.bot.commands.prompts
        if prompts is not None and prompts._waiting:
            return replica
    raise AssertionError("no replica waits")


async def test_a_prompt_is_answered_through_another_replica(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    user = discord.add_user("dana")
    async with (
        replicas(stack, 2, prompting_bot) as started,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, user, "!ask")
        key = stack.keys.prompt(channel_id, int(user["id"]))
        waiter = await waiting_replica(stack, started, key)
        assert waiter.consumer is not None
        await waiter.consumer.stop_intake()  # the answer can only reach the other one
        discord.send_message(channel_id, user, "um...")  # fails the check: keeps waiting
        discord.send_message(channel_id, user, "Dana")
        await discord.wait_for(lambda: "Hello Dana" in replies(discord, channel_id))
    assert replies(discord, channel_id) == ["What's your name?", "Hello Dana"]


async def test_a_button_click_reaches_the_waiting_handler_on_another_replica(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    user = discord.add_user("eve")
    async with (
        replicas(stack, 2, prompting_bot) as started,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, user, "!confirm")
        waiter = await waiting_replica(stack, started, stack.keys.component_wait("confirm-yes"))
        assert waiter.consumer is not None
        await waiter.consumer.stop_intake()
        question = next(
            m for m in discord.world.messages[channel_id].values()
            if m["content"] == "Sure?"
        )  # fmt: skip
        click = discord.click(question, user, "confirm-yes")
        await discord.wait_for(lambda: f"confirmed by {user['id']}" in replies(discord, channel_id))
    assert click.response_type == 6  # acknowledged at once by the replica that got it


async def test_max_concurrency_holds_across_replicas_and_frees_the_slot(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    users = [discord.add_user(f"s{i}") for i in range(3)]
    async with replicas(stack, 2), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        for user in users:
            discord.send_message(channel_id, user, "!slow")
            await asyncio.sleep(0.05)
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 3)
        discord.send_message(channel_id, users[0], "!slow")  # the slot is free again
        await discord.wait_for(lambda: replies(discord, channel_id).count("done") == 2)
    said = replies(discord, channel_id)
    assert said.count("done") == 2
    assert sum("already running" in r for r in said) == 2


async def test_subcommands_as_prefix_and_slash_and_autocomplete(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id, _ = setup_guild(stack)
    user = discord.add_user("fay")
    async with replicas(stack, 1), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, user, "!config show")
        await discord.wait_for(lambda: replies(discord, channel_id) == ["config shown"])
        discord.send_message(channel_id, user, "!config nope")
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 2)
        slash = discord.send_interaction(
            channel_id, user, "config",
            [{"type": 1, "name": "set", "options": [
                {"name": "key", "type": 3, "value": "lang"},
                {"name": "value", "type": 3, "value": "fr"},
            ]}],
        )  # fmt: skip
        typing_in = discord.send_interaction(
            channel_id, user, "pick", kind=4,
            data={"id": "1", "name": "pick", "type": 1, "options": [
                {"name": "fruit", "type": 3, "value": "ap", "focused": True},
            ]},
        )  # fmt: skip
        await discord.wait_for(lambda: slash.response is not None)
        await discord.wait_for(lambda: typing_in.response is not None)
    assert "Choose one of `set`, `show`" in replies(discord, channel_id)[1]
    assert slash.response is not None
    assert slash.response["data"]["content"] == "lang=fr"
    assert typing_in.response_type == 8
    assert typing_in.response is not None
    assert [c["value"] for c in typing_in.response["data"]["choices"]] == ["apple", "apricot"]


async def test_prefix_permissions_with_default_intents_and_no_member_chunked(
    stack: Stack,
) -> None:
    """Issue 23: with default intents GUILD_CREATE carries only the bot (Gateway Events "Guild
    Create"), so nobody is in the member cache: the owner passes before any member lookup, the
    roles the message carried decide for the others, and an unknown member is refused only
    after Discord answers 404 Unknown Member."""
    discord = stack.discord
    guild_id, channel_id, owner = setup_guild(stack)
    manage_role = discord.world.snowflakes.next()
    discord.world.guilds[guild_id]["roles"].append(
        {
            "id": str(manage_role),
            "name": "mods",
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": 1,
            "permissions": str(int(hikari.Permissions.MANAGE_GUILD)),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
    )
    mod = discord.add_user("mod")
    pleb = discord.add_user("pleb")
    discord.world.add_member(guild_id, owner)
    discord.world.add_member(guild_id, mod, roles=[manage_role])
    discord.world.add_member(guild_id, pleb)
    async with replicas(stack, 1) as (replica,), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        cache = replica.bot.cache
        assert cache is not None
        await discord.wait_for(lambda: len(discord.records.identifies) >= 1)
        for _ in range(100):
            if await cache.get_guild(guild_id) is not None:
                break
            await asyncio.sleep(0.05)
        # Item 5: a shard answers the configured intents, not every intent.
        assert replica.bot.shard_for(guild_id).intents == hikari.Intents(config.DEFAULT_INTENTS)
        # Faithful GUILD_CREATE: none of the three is cached.
        for user in (owner, mod, pleb):
            assert await cache.member_json(guild_id, int(user["id"])) is None
        discord.send_message(channel_id, owner, "!prefix ?")
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 1)
        discord.send_message(channel_id, mod, "?prefix !")
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 2)
        discord.send_message(channel_id, pleb, "!prefix $")
        await discord.wait_for(lambda: len(replies(discord, channel_id)) == 3)
        member_fetches = [r for r in discord.records.rest if "/members/" in r.path]
        assert member_fetches == []  # everything was decided from the events themselves

        # Someone the event does not describe: Discord is asked, and only its 404 refuses.
        router = replica.bot.commands
        stranger = discord.world.snowflakes.next()
        assert await router._fetched_roles(guild_id, stranger) is router_module._NOT_A_MEMBER
        assert [r.status for r in discord.records.rest if f"/members/{stranger}" in r.path] == [404]
        # A member known to Discord but not cached: fetched once, then remembered.
        for _ in range(2):
            roles = await router._fetched_roles(guild_id, int(mod["id"]))
            assert isinstance(roles, list)
            assert manage_role in roles
        fetched = [r for r in discord.records.rest if f"/members/{mod['id']}" in r.path]
        assert [r.status for r in fetched] == [200]
    first, second, third = replies(discord, channel_id)
    assert first == "Prefix set to `?`."
    assert second == "Prefix set to `!`."
    assert "You need the **Manage Guild** permission" in third
