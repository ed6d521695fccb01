"""What the worker changes of an arc or tanjun client before its replicas start, and what
``sync-commands`` exports of their commands."""

from __future__ import annotations

import typing

import arc
import hikari
import pytest
import tanjun
from tanjun import clients as tanjun_clients

from shared import keys
from shared.cache import reader
from worker import bot as bot_module
from worker import frameworks, interactions, rest_limits

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis


@pytest.fixture
async def bot(redis_client: aioredis.Redis, namespace: str) -> bot_module.Bot:
    """A bot as plugins' ``setup`` sees it (REST, cache, Redis); nothing here calls Discord."""
    made = bot_module.Bot()
    redis_keys = keys.RedisKeys(namespace, "main")
    rest = rest_limits.build_client(
        token="unused", api_url="http://127.0.0.1:9/api/v10", entity_factory=made.entity_factory,
        limiter="off", global_limit=50, redis=redis_client, redis_keys=redis_keys,
    )  # fmt: skip
    made.attach_clients(
        rest=interactions.InteractionAwareRest(rest),
        cache=reader.CacheReader(redis_client, redis_keys, made.entity_factory),
        redis=redis_client,
        redis_keys=redis_keys,
    )
    return made


def gateway_bot(bot: bot_module.Bot) -> typing.Any:
    return bot  # arc and tanjun take it for a GatewayBot; they check nothing else at run time


def declarers(client: tanjun.Client) -> list[object]:
    return [
        c
        for c in client.get_client_callbacks(tanjun.ClientCallbackNames.STARTING)
        if isinstance(c, tanjun_clients._StartDeclarer)
    ]


async def test_declaring_and_the_async_cache_are_taken_off_tanjun(bot: bot_module.Bot) -> None:
    client = tanjun.Client.from_gateway_bot(
        gateway_bot(bot), declare_global_commands=True, mention_prefix=True
    )
    assert declarers(client)
    assert client.cache is typing.cast("typing.Any", bot.cache)  # async: tanjun cannot use it
    found = frameworks.prepare(bot.event_manager)
    assert found.tanjun == [client]
    assert found.arc == []
    assert not declarers(client)
    assert client.cache is None
    assert client.get_type_dependency(hikari.api.Cache, default=None) is None
    assert client._slash_not_found == "Command not found"  # alone: its own reply stays


async def test_beside_another_handler_tanjun_leaves_unknown_commands_alone(
    bot: bot_module.Bot,
) -> None:
    client = tanjun.Client.from_gateway_bot(gateway_bot(bot))
    arc_client = arc.GatewayClient(gateway_bot(bot))
    found = frameworks.prepare(bot.event_manager)
    assert (found.arc, found.tanjun) == ([arc_client], [client])
    assert client._slash_not_found is None
    assert client._menu_not_found is None


async def test_arc_autosync_is_off_and_its_listener_awaits_the_command_once(
    bot: bot_module.Bot,
) -> None:
    client = arc.GatewayClient(gateway_bot(bot))
    original = client._on_gatewaybot_interaction_create
    assert client._autosync
    frameworks.prepare(bot.event_manager)
    frameworks.prepare(bot.event_manager)  # twice changes nothing more
    assert not client._autosync
    listeners = bot.event_manager.get_listeners(hikari.InteractionCreateEvent)
    assert original not in listeners
    assert len(listeners) == 1


async def test_sync_exports_each_frameworks_commands_by_its_own_rules(
    bot: bot_module.Bot,
) -> None:
    client = tanjun.Client.from_gateway_bot(gateway_bot(bot)).set_dms_enabled_for_app_cmds(False)
    component = tanjun.Component()

    @component.with_command
    @tanjun.with_str_slash_option("word", "a word")
    @tanjun.as_slash_command("echo", "Says it back", default_member_permissions=8)
    async def echo(ctx: tanjun.abc.SlashContext, word: str) -> None:
        await ctx.respond(word)

    @component.with_command
    @tanjun.as_slash_command("local", "One guild's", is_global=False)
    async def local(ctx: tanjun.abc.SlashContext) -> None:
        await ctx.respond("here")

    client.add_component(component)
    arc_client = arc.GatewayClient(gateway_bot(bot))

    @arc_client.include
    @arc.slash_command("hi", "Say hi!")
    async def hi(ctx: arc.GatewayContext) -> None:
        await ctx.respond("hi")

    @arc_client.include
    @arc.slash_command("guilded", "In one guild", guilds=[123])
    async def guilded(ctx: arc.GatewayContext) -> None:
        await ctx.respond("guilded")

    global_ = {b.name: b for b in frameworks.command_builders(bot.event_manager)}
    assert sorted(global_) == ["echo", "hi"]
    echo_built = typing.cast("hikari.api.SlashCommandBuilder", global_["echo"])
    assert [o.name for o in echo_built.options] == ["word"]
    assert echo_built.default_member_permissions == hikari.Permissions(8)
    assert list(echo_built.context_types) == [hikari.ApplicationContextType.GUILD]  # DMs off
    in_guild = frameworks.command_builders(bot.event_manager, guild_id=123)
    assert sorted(b.name for b in in_guild) == ["echo", "guilded", "hi", "local"]
