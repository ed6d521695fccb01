"""hikari's listener conventions on a worker, against real RabbitMQ and Redis: listeners typed
by their annotation (unions too), events bot code dispatches itself, ``wait_for`` and
``stream``; and the GatewayBot-shaped methods that need no server."""

from __future__ import annotations

import asyncio
import logging
import typing

import hikari
import pytest

from tests.worker import test_consumer as consumer_tests
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack


class Said(hikari.Event):
    """An event of the bot's own, as a hikari user defines one (hikari's ``dispatch`` docs)."""

    def __init__(self, app: hikari.RESTAware, text: str) -> None:
        self._app = app
        self.text = text

    @property
    def app(self) -> hikari.RESTAware:
        return self._app


def dm_payload(stack: Stack, content: str) -> dict[str, typing.Any]:
    user = stack.discord.add_user("dm-user")
    channel = stack.discord.world.open_dm(user)
    return typing.cast(
        "dict[str, typing.Any]",
        stack.discord.world.make_message(int(channel["id"]), user, content),
    )


async def test_annotation_typed_listeners_and_unions_get_their_events(stack: Stack) -> None:
    bot = bot_module.Bot()
    either: list[str] = []
    guild_only: list[str] = []

    @bot.listen()
    async def on_any(event: hikari.GuildMessageCreateEvent | hikari.DMMessageCreateEvent) -> None:
        either.append(f"{type(event).__name__}:{event.content}")

    @bot.listen()
    async def on_guild(event: hikari.GuildMessageCreateEvent) -> None:
        guild_only.append(event.content or "")

    async with consumer_tests.worker(stack, bot) as replica:
        assert replica.bot.events.listened_gateway_events() == ["MESSAGE_CREATE"]
        await consumer_tests.publish(
            stack,
            consumer_tests.item(
                1, "MESSAGE_CREATE", consumer_tests.message_payload(stack, "in a guild")
            ),
        )
        await consumer_tests.publish(
            stack, consumer_tests.item(2, "MESSAGE_CREATE", dm_payload(stack, "in a DM"))
        )
        await consumer_tests.until(lambda: len(either) == 2, "both messages")
    assert sorted(either) == [
        "DMMessageCreateEvent:in a DM",
        "GuildMessageCreateEvent:in a guild",
    ]
    assert guild_only == ["in a guild"]


async def test_events_bot_code_dispatches_reach_listeners_and_waiters(stack: Stack) -> None:
    bot = bot_module.Bot()
    said: list[str] = []

    @bot.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        bot.dispatch(Said(bot, f"bot:{event.content}"))  # as a hikari bot does
        await bot.event_manager.dispatch(Said(bot, "framework"), return_tasks=True)

    @bot.listen()
    async def on_said(event: Said) -> None:
        said.append(event.text)

    async with consumer_tests.worker(stack, bot):
        waiter = asyncio.create_task(
            bot.wait_for(Said, timeout=10, predicate=lambda e: e.text.startswith("bot:"))
        )
        await asyncio.sleep(0)
        await consumer_tests.publish(
            stack,
            consumer_tests.item(1, "MESSAGE_CREATE", consumer_tests.message_payload(stack, "hi")),
        )
        got = await waiter
        await consumer_tests.until(lambda: len(said) == 2, "both dispatched events")
    assert got.text == "bot:hi"
    assert sorted(said) == ["bot:hi", "framework"]


async def test_wait_for_and_stream_see_the_events_this_replica_takes(stack: Stack) -> None:
    bot = bot_module.Bot()

    @bot.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        pass  # binds MESSAGE_CREATE, as any listener of the plugin's would

    async with consumer_tests.worker(stack, bot):
        waiter = asyncio.create_task(
            bot.wait_for(
                hikari.GuildMessageCreateEvent, timeout=10, predicate=lambda e: e.content == "2"
            )
        )
        streamed: list[str] = []
        with bot.stream(hikari.GuildMessageCreateEvent, timeout=10, limit=10) as stream:
            for seq, text in enumerate(["1", "2", "3"], start=1):
                payload = consumer_tests.message_payload(stack, text)
                await consumer_tests.publish(
                    stack, consumer_tests.item(seq, "MESSAGE_CREATE", payload)
                )
            async for event in stream:
                streamed.append(event.content or "")
                if len(streamed) == 3:
                    break
        got = await waiter
    assert got.content == "2"
    assert sorted(streamed) == ["1", "2", "3"]
    assert bot.get_listeners(hikari.GuildMessageCreateEvent) == [on_message]  # stream closed


async def test_a_failing_listener_dispatches_exception_event_and_only_it_is_retried(
    stack: Stack,
) -> None:
    bot = bot_module.Bot()
    runs: list[str] = []
    reports: list[str] = []

    @bot.listen()
    async def steady(event: hikari.GuildMessageCreateEvent) -> None:
        runs.append(f"steady {event.content}")

    @bot.listen()
    async def flaky(event: hikari.GuildMessageCreateEvent) -> None:
        runs.append(f"flaky {event.content}")
        if runs.count(f"flaky {event.content}") == 1:
            raise RuntimeError("Discord answered 503")

    @bot.listen()
    async def on_error(event: hikari.ExceptionEvent[hikari.Event]) -> None:
        reports.append(f"{event.failed_callback.__name__}: {event.exception}")

    async with consumer_tests.worker(stack, bot, RETRY_DELAYS="0.2") as replica:
        assert replica.consumer is not None
        stats = replica.consumer.stats
        payload = consumer_tests.message_payload(stack, "hi")
        await consumer_tests.publish(stack, consumer_tests.item(1, "MESSAGE_CREATE", payload))
        await consumer_tests.until(lambda: stats.handled["MESSAGE_CREATE"] == 1, "the retry")
    assert reports == ["flaky: Discord answered 503"]
    assert sorted(runs) == ["flaky hi", "flaky hi", "steady hi"]  # steady not run again
    assert stats.retried == 1


async def test_what_a_worker_can_never_receive_is_said_in_the_log(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    bot = bot_module.Bot()

    @bot.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None: ...

    @bot.listen()
    async def on_presence(event: hikari.PresenceUpdateEvent) -> None: ...

    with caplog.at_level(logging.WARNING, logger="shardline.worker"):
        async with consumer_tests.worker(stack, bot, INTENTS="GUILDS,GUILD_MESSAGES"):
            with pytest.raises(TimeoutError):
                await bot.wait_for(hikari.MemberCreateEvent, timeout=0.05)
            with pytest.raises(TimeoutError):  # said once per type
                await bot.wait_for(hikari.MemberCreateEvent, timeout=0.05)
            with pytest.raises(TimeoutError):  # bound: nothing said
                await bot.wait_for(hikari.GuildMessageCreateEvent, timeout=0.05)
    said = [r for r in caplog.records if r.name == "shardline.worker" or "bot" in r.name]
    [intents] = [r for r in said if r.getMessage().startswith("listeners for events INTENTS")]
    [unbound] = [r for r in said if r.getMessage().startswith("waiting for events")]
    assert intents.missing == {"PresenceUpdateEvent": ["GUILD_PRESENCES"]}  # type: ignore[attr-defined]
    assert unbound.event == "MemberCreateEvent"  # type: ignore[attr-defined]
    assert unbound.gateway_events == ["GUILD_MEMBER_ADD"]  # type: ignore[attr-defined]


async def test_the_listener_api_is_hikaris() -> None:
    bot = bot_module.Bot()

    async def on_member(event: hikari.MemberCreateEvent) -> None: ...

    with pytest.raises(TypeError, match="type hint"):

        @bot.listen()
        async def untyped(event) -> None: ...  # type: ignore[no-untyped-def]  # noqa: ANN001

    async def typed_later(event: hikari.MemberCreateEvent) -> None: ...

    typed_later.__annotations__["event"] = "MemberDeleteEvent"  # imported under TYPE_CHECKING
    with pytest.raises(TypeError, match=r"not under typing\.TYPE_CHECKING"):
        bot.listen()(typed_later)
    with pytest.raises(TypeError, match="non-coroutine"):
        bot.subscribe(hikari.MemberCreateEvent, lambda event: None)  # type: ignore[arg-type, return-value]
    bot.subscribe(hikari.MemberCreateEvent, on_member)
    assert bot.get_listeners(hikari.MemberCreateEvent) == [on_member]
    assert bot.events.listened_gateway_events() == ["GUILD_MEMBER_ADD"]
    bot.unsubscribe(hikari.MemberCreateEvent, on_member)
    assert bot.get_listeners(hikari.MemberCreateEvent) == []
    assert bot.events.listened_gateway_events() == []
    assert not bot.is_alive
    with pytest.raises(hikari.ComponentStateConflictError):
        await bot.wait_for(hikari.MemberCreateEvent, timeout=1)
    with pytest.raises(hikari.ComponentStateConflictError):
        bot.stream(hikari.MemberCreateEvent, timeout=1)
    # Not running: no remote shard to send through, as hikari's bot has no shard yet.
    with pytest.raises(RuntimeError, match="started"):
        await bot.update_presence(status=hikari.Status.IDLE)
