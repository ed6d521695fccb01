"""The worker's consumer against real RabbitMQ and Redis: bad input parked alone with its
reason, retries with backoff through the broker's retry queues, every message settled."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import typing

import aio_pika
import hikari
import orjson
import pytest

from shared import config, envelope, topology
from shared import logging as shared_logging
from tests.cli import running
from worker import app
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

    from tests.gateway.conftest import Stack

INTERACTION_TOKEN: typing.Final = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXRzZWNyZXRzZWNyZXQ"


@contextlib.asynccontextmanager
async def worker(
    stack: Stack, bot: bot_module.Bot, **extra: str
) -> typing.AsyncIterator[app.WorkerApp]:
    settings = config.WorkerSettings.from_env(stack.env(WORKER_ROLES="events", **extra))
    replica = app.WorkerApp(settings, bot)
    try:
        await replica.start()
        yield replica
    finally:
        await replica.close()


def item(seq: int, name: str, data: typing.Any) -> dict[str, typing.Any]:
    return envelope.wire("main", "gw", "rq", 0, 1, "s", seq, name, data, time.time())


def message_payload(stack: Stack, content: str) -> dict[str, typing.Any]:
    guild = stack.discord.add_guild("g")
    channel_id = int(stack.discord.channels_of(int(guild["id"]))[0]["id"])
    user = stack.discord.add_user("u")
    return typing.cast(
        "dict[str, typing.Any]", stack.discord.world.make_message(channel_id, user, content)
    )


async def publish(stack: Stack, body: object, name: str = "MESSAGE_CREATE") -> None:
    channel = await stack.connection.channel()
    exchange = await channel.get_exchange(stack.topology.events_exchange)
    await exchange.publish(
        aio_pika.Message(orjson.dumps(body), message_id=f"m-{time.monotonic_ns()}"),
        stack.topology.event_key("main", name),
    )
    await channel.close()


async def dead_letters(
    stack: Stack, count: int, timeout: float = 10
) -> list[pika_abc.AbstractIncomingMessage]:
    """``count`` dead letters (acked), then checks no more are there."""
    channel = await stack.connection.channel()
    queue = await stack.topology.declare_dead_letter(channel)
    found = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} dead letters"
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        found.append(message)
    await asyncio.sleep(0.3)
    assert await queue.get(fail=False) is None, "more dead letters than expected"
    return found


async def until(check: typing.Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.mark.usefixtures("root_logging")
async def test_an_undeserializable_payload_is_dead_lettered_with_its_reason_token_redacted(
    stack: Stack,
) -> None:
    out = io.StringIO()
    shared_logging.configure("INFO", stream=out, fmt="json")
    bot = bot_module.Bot()
    seen: list[hikari.Event] = []

    @bot.listen(hikari.InteractionCreateEvent)
    async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
        seen.append(event)

    # A slash command without its "data": hikari cannot build the event.
    broken = {"id": "1", "application_id": "2", "type": 2, "token": INTERACTION_TOKEN}
    async with worker(stack, bot) as replica:
        await publish(stack, item(1, "INTERACTION_CREATE", broken), "INTERACTION_CREATE")
        [parked] = await dead_letters(stack, 1)
        assert replica.consumer is not None
        assert replica.consumer.stats.handled["INTERACTION_CREATE"] == 0
    reason = str(parked.headers[topology.HEADER_REASON])
    assert "hikari cannot build INTERACTION_CREATE" in reason
    assert "KeyError" in reason
    assert envelope.decode(parked.body).d == broken  # kept whole, for a fixed worker to replay
    assert parked.routing_key == stack.topology.event_key("main", "INTERACTION_CREATE")
    assert not seen
    logged = out.getvalue()
    assert "dead-lettering" in logged
    assert INTERACTION_TOKEN not in logged


async def test_a_bad_envelope_in_a_batch_is_parked_alone_and_the_others_are_handled(
    stack: Stack,
) -> None:
    bot = bot_module.Bot()
    seen: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        seen.append(event.content or "")

    malformed = {**item(2, "MESSAGE_CREATE", {}), "seq": -1}
    no_author = {k: v for k, v in message_payload(stack, "no author").items() if k != "author"}
    batch = [
        item(1, "MESSAGE_CREATE", message_payload(stack, "first")),
        malformed,
        item(3, "MESSAGE_CREATE", no_author),
        item(4, "MESSAGE_CREATE", message_payload(stack, "last")),
    ]
    async with worker(stack, bot) as replica:
        await publish(stack, batch)
        await until(lambda: seen == ["first", "last"], "the good envelopes handled")
        parked = await dead_letters(stack, 2)
        assert replica.consumer is not None
        assert replica.consumer.stats.dead_lettered == 2
    by_reason = {str(m.headers[topology.HEADER_REASON]): orjson.loads(m.body) for m in parked}
    assert by_reason["field 'seq' must be a non-negative integer"] == malformed
    [(reason, body)] = [(r, b) for r, b in by_reason.items() if "hikari" in r]
    assert "hikari cannot build MESSAGE_CREATE" in reason
    assert body["seq"] == 3  # alone: one envelope, not the batch
    assert seen == ["first", "last"]  # handled once each, nothing replayed


async def test_a_handler_failing_twice_then_succeeding_is_retried_with_backoff(
    stack: Stack,
) -> None:
    bot = bot_module.Bot()
    flaky_calls: list[float] = []
    steady_calls: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def steady(event: hikari.GuildMessageCreateEvent) -> None:
        steady_calls.append(event.content or "")

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def flaky(event: hikari.GuildMessageCreateEvent) -> None:
        flaky_calls.append(time.monotonic())
        if len(flaky_calls) <= 2:
            raise RuntimeError("Discord answered 503")

    async with worker(stack, bot, RETRY_DELAYS="0.3,0.6,0.9") as replica:
        assert replica.consumer is not None
        stats = replica.consumer.stats
        await publish(stack, item(1, "MESSAGE_CREATE", message_payload(stack, "hi")))
        await until(lambda: stats.handled["MESSAGE_CREATE"] == 1, "handled after two retries")
        await asyncio.sleep(1.2)  # nothing more comes
    assert len(flaky_calls) == 3
    assert steady_calls == ["hi"]  # it succeeded the first time: never run again
    first, second = flaky_calls[1] - flaky_calls[0], flaky_calls[2] - flaky_calls[1]
    assert 0.3 <= first < 0.6 + 0.5, first
    assert 0.6 <= second < 0.9 + 0.5, second
    assert stats.handled["MESSAGE_CREATE"] == 1
    assert stats.retried == 2
    assert stats.failures["MESSAGE_CREATE"] == 2
    assert stats.dead_lettered == 0


async def test_retries_exhausted_dead_letter_with_the_error_shown_by_the_cli(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = bot_module.Bot()
    calls: list[float] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def broken(event: hikari.GuildMessageCreateEvent) -> None:
        calls.append(time.monotonic())
        raise hikari.InternalServerError(
            f"https://discord.com/api/v10/webhooks/1/{INTERACTION_TOKEN}", 503, {}, b"", "down"
        )

    async with worker(stack, bot, RETRY_DELAYS="0.05,0.1") as replica:
        await publish(stack, item(1, "MESSAGE_CREATE", message_payload(stack, "doomed")))
        await until(
            lambda: replica.consumer is not None and replica.consumer.stats.dead_lettered == 1,
            "dead-lettered",
        )
    assert len(calls) == 3  # the first try and two retries
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    code, doc = await running.json_document(capsys, "dead-letters")
    assert code == 0
    [dead] = doc["dead_letters"]
    assert dead["reason"] == "handler failed 3 times"
    assert dead["routing_key"] == stack.topology.event_key("main", "MESSAGE_CREATE")
    assert dead["error"].startswith("hikari.errors.InternalServerError: ")
    assert "/webhooks/1/***" in dead["error"]
    assert INTERACTION_TOKEN not in dead["error"]
    code, out = await running.shardline(capsys, "dead-letters")
    assert code == 0
    assert "InternalServerError" in out
    [parked] = await dead_letters(stack, 1)
    assert envelope.decode(parked.body).d["content"] == "doomed"


class Stop(BaseException):
    """Not an Exception: what a handler's SystemExit-like escape looks like."""


async def test_a_base_exception_in_a_handler_still_settles_the_message(stack: Stack) -> None:
    bot = bot_module.Bot()
    calls: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def escapes_once(event: hikari.GuildMessageCreateEvent) -> None:
        calls.append(event.content or "")
        if len(calls) == 1:
            raise Stop

    async with worker(stack, bot) as replica:
        assert replica.consumer is not None
        stats = replica.consumer.stats
        await publish(stack, item(1, "MESSAGE_CREATE", message_payload(stack, "again")))
        # Left unacked, it would wait for the channel to close; settled, it comes back at once.
        await until(lambda: stats.handled["MESSAGE_CREATE"] == 1, "handled on redelivery", 5)
    assert calls == ["again", "again"]


async def test_a_worker_stopping_mid_handler_requeues_the_message(stack: Stack) -> None:
    bot = bot_module.Bot()
    started = asyncio.Event()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def slow(event: hikari.GuildMessageCreateEvent) -> None:
        started.set()
        await asyncio.sleep(60)

    async with worker(stack, bot) as replica:
        await publish(stack, item(1, "MESSAGE_CREATE", message_payload(stack, "slow")))
        await asyncio.wait_for(started.wait(), 10)
        assert replica.consumer is not None
        await replica.consumer.stop_intake()
        [task] = replica.consumer._inflight
        task.cancel()
        await asyncio.wait([task])
        # Settled: back on the queue, ready for another replica, not held unacked.
        channel = await stack.connection.channel()
        deadline = time.monotonic() + 5
        while True:
            declared = await channel.declare_queue(
                stack.topology.worker_queue("main", "default"), passive=True
            )
            if declared.declaration_result.message_count == 1:
                break
            assert time.monotonic() < deadline, "the message was not put back"
            await asyncio.sleep(0.05)


async def test_a_message_taken_too_often_is_parked_whatever_the_broker_counts(
    stack: Stack,
) -> None:
    """RabbitMQ 4.3+ counts only failed deliveries towards the delivery limit and reports every
    acquisition as ``x-acquired-count``: a message taken that often is parked by the worker."""
    bot = bot_module.Bot()
    seen: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        seen.append(event.content or "")

    async with worker(stack, bot):
        channel = await stack.connection.channel()
        exchange = await channel.get_exchange(stack.topology.events_exchange)
        body = orjson.dumps(item(1, "MESSAGE_CREATE", message_payload(stack, "crashy")))
        await exchange.publish(
            aio_pika.Message(body, headers={"x-acquired-count": topology.DELIVERY_LIMIT}),
            stack.topology.event_key("main", "MESSAGE_CREATE"),
        )
        [parked] = await dead_letters(stack, 1)
    reason = str(parked.headers[topology.HEADER_REASON])
    assert reason == f"delivered {topology.DELIVERY_LIMIT + 1} times without being settled"
    assert "x-acquired-count" not in parked.headers
    assert not seen


async def test_a_failure_outside_a_listener_is_retried_like_one(stack: Stack) -> None:
    """A Lavalink event's handler runs in the voice dispatch, not as a hikari listener: its
    failure is retried after the delay too, never left to escape the consumer."""
    bot = bot_module.Bot()
    calls: list[float] = []

    @bot.voice.listen("TrackEndEvent")
    async def on_track_end(event: typing.Any) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("Lavalink hiccup")

    async with worker(stack, bot, RETRY_DELAYS="0.3") as replica:
        assert replica.consumer is not None
        stats = replica.consumer.stats
        name = "lavalink.TrackEndEvent"
        await publish(stack, item(1, name, {"guildId": "81384788765712384"}), name)
        await until(lambda: stats.handled[name] == 1, "handled after one retry")
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.3
    assert (stats.retried, stats.failures[name], stats.dead_lettered) == (1, 1, 0)


async def test_a_retry_the_broker_returns_is_requeued_not_acked(stack: Stack) -> None:
    """A review of the restore change: retry queues are no longer restored by the robust
    channel (RabbitMQ keeps them; ``shared.broker.Redeclaring`` declares them again for a node
    that came back empty). A retry published while one is missing is returned by the broker:
    it was acked as if parked, and the event was lost. Now it goes back on the queue."""
    bot = bot_module.Bot()
    calls: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def flaky(event: hikari.GuildMessageCreateEvent) -> None:
        calls.append(event.content or "")
        if len(calls) == 1:
            raise RuntimeError("Discord answered 503")

    async with worker(stack, bot, RETRY_DELAYS="0.3") as replica:
        assert replica.consumer is not None
        stats = replica.consumer.stats
        work = stack.topology.worker_queue("main", "default")
        channel = await stack.connection.channel()
        await channel.queue_delete(stack.topology.retry_queue(work, 0.3))  # the node forgot it
        await publish(stack, item(1, "MESSAGE_CREATE", message_payload(stack, "kept")))
        await until(lambda: stats.handled["MESSAGE_CREATE"] == 1, "handled on its redelivery")
    assert calls == ["kept", "kept"]
    assert stats.retried == 0
    assert stats.failures["MESSAGE_CREATE"] == 1
