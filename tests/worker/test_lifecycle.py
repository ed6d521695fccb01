"""A worker's lifecycle as a hikari bot sees it, against real RabbitMQ, Redis and MongoDB and
the Discord emulator: plugins set up (sync or async) once REST, the cache and the settings
exist; hikari's lifecycle events on every replica; a SIGTERM drain that still ends."""

from __future__ import annotations

import asyncio
import os
import sys
import typing

import hikari
import pytest

from shared import config
from tests.worker import test_consumer as consumer_tests
from worker import app
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from playground.discord import emulator
    from tests.gateway.conftest import Stack


class Later(hikari.Event):
    """An event the bot dispatches itself."""

    def __init__(self, app: hikari.RESTAware) -> None:
        self._app = app

    @property
    def app(self) -> hikari.RESTAware:
        return self._app


Lifecycle = hikari.StartingEvent | hikari.StartedEvent | hikari.StoppingEvent | hikari.StoppedEvent


async def test_a_plugin_written_for_hikari_sets_up_async_with_rest_and_answers(
    stack: Stack,
) -> None:
    discord = stack.discord
    async with consumer_tests.worker(
        stack, bot_module.Bot(), WORKER_PLUGINS="tests.worker.plugin_hikari"
    ) as replica:
        assert replica.bot.events.listened_gateway_events() == ["MESSAGE_CREATE"]
        payload = consumer_tests.message_payload(stack, "!whoami")
        await consumer_tests.publish(stack, consumer_tests.item(1, "MESSAGE_CREATE", payload))
        await consumer_tests.until(
            lambda: any(c.method == "POST" for c in discord.records.rest), "the answer"
        )
    [answer] = [c for c in discord.records.rest if c.method == "POST"]
    assert answer.path == f"/channels/{payload['channel_id']}/messages"
    assert answer.body["content"] == f"I am {discord.world.bot_user['username']}"


async def test_a_plugin_that_registers_nothing_stops_the_worker_naming_it(stack: Stack) -> None:
    with pytest.raises(app.PluginError) as raised:
        async with consumer_tests.worker(
            stack,
            bot_module.Bot(),
            WORKER_PLUGINS="tests.worker.plugin_hikari,tests.worker.plugin_empty",
        ):
            pytest.fail("the worker started")
    assert str(raised.value) == (
        "WORKER_PLUGINS: 'tests.worker.plugin_empty': setup(bot) registered nothing (no"
        " listener, command, service, schedule, fleet answer or voice listener)"
    )
    assert "\n" not in str(raised.value)


async def test_sync_commands_sets_plugins_up_with_rest_as_a_worker_does(
    discord: emulator.DiscordEmulator, redis_url: str, namespace: str
) -> None:
    settings = config.WorkerSettings.from_env(
        {
            "DISCORD_TOKEN": discord.token, "DISCORD_API_URL": discord.api_url,
            "REDIS_URL": redis_url, "NAMESPACE": namespace,
            "WORKER_PLUGINS": "tests.worker.plugin_hikari",
        }
    )  # fmt: skip
    report = await app.sync_commands(settings, dry_run=True)
    assert "0 to add, 0 to change, 0 to remove" in report
    assert [c.path for c in discord.records.rest if c.path.endswith("/users/@me")]


async def test_python_m_worker_exits_with_one_line_for_a_plugin_that_registers_nothing(
    stack: Stack,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker",
        env={**os.environ, **stack.env(WORKER_PLUGINS="tests.worker.plugin_empty")},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    lines = err.decode().splitlines()
    assert lines[-1] == (
        "worker: WORKER_PLUGINS: 'tests.worker.plugin_empty': setup(bot) registered nothing"
        " (no listener, command, service, schedule, fleet answer or voice listener)"
    )
    assert "Traceback" not in err.decode()


def recorder(bot: bot_module.Bot, seen: list[str]) -> None:
    @bot.listen()
    async def on_lifecycle(event: Lifecycle) -> None:
        me = bot.get_me()
        # What a hikari bot may do at each point: REST and the cache work from StartingEvent.
        cached = await bot.cache.guild_ids() if bot.is_alive else None
        seen.append(
            f"{type(event).__name__} alive={bot.is_alive} me={me is not None}"
            f" cache={cached is not None}"
        )


async def test_every_replica_dispatches_hikaris_lifecycle_events_in_order(stack: Stack) -> None:
    first, second = bot_module.Bot(), bot_module.Bot()
    seen_first: list[str] = []
    seen_second: list[str] = []
    recorder(first, seen_first)
    recorder(second, seen_second)
    assert not first.is_alive
    async with consumer_tests.worker(stack, first), consumer_tests.worker(stack, second):
        assert first.is_alive
        assert second.is_alive
        assert first.get_me() is not None
        assert first.get_me() == await first.rest.fetch_my_user()
    assert not first.is_alive
    expected = [
        "StartingEvent alive=True me=True cache=True",
        "StartedEvent alive=True me=True cache=True",
        "StoppingEvent alive=True me=True cache=True",
        "StoppedEvent alive=True me=True cache=True",
    ]
    assert seen_first == expected
    assert seen_second == expected


async def test_a_sigterm_drain_finishes_handlers_though_a_stopping_listener_hangs(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "LIFECYCLE_TIMEOUT", 0.5)
    bot = bot_module.Bot()
    order: list[str] = []
    handling = asyncio.Event()

    @bot.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        bot.dispatch(Later(bot))  # runs in a task of its own, as in hikari
        handling.set()
        await asyncio.sleep(0.3)
        order.append(f"handled {event.content}")

    @bot.listen()
    async def on_later(event: Later) -> None:
        del event
        await asyncio.sleep(0.6)
        order.append("dispatched event handled")

    @bot.listen()
    async def on_stopping(event: hikari.StoppingEvent) -> None:
        del event
        order.append("stopping")
        await asyncio.Event().wait()  # never returns: bounded by LIFECYCLE_TIMEOUT

    @bot.listen()
    async def on_stopped(event: hikari.StoppedEvent) -> None:
        del event
        order.append("stopped")

    async with consumer_tests.worker(stack, bot) as replica:
        payload = consumer_tests.message_payload(stack, "in flight")
        await consumer_tests.publish(stack, consumer_tests.item(1, "MESSAGE_CREATE", payload))
        await asyncio.wait_for(handling.wait(), 10)
        # What run() does on SIGTERM: the worker's close (the context manager's exit).
    assert replica.consumer is not None
    assert replica.consumer.stats.handled["MESSAGE_CREATE"] == 1
    assert order == ["stopping", "handled in flight", "dispatched event handled", "stopped"]
