"""Worker replicas against the emulator, a real gateway, real RabbitMQ and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import typing

import aio_pika
import aiohttp
import hikari
import orjson
import pytest

from shared import config, envelope, topology
from shared import logging as shared_logging
from tests import exposition
from tests.deploy import exported
from tests.exposition import value
from worker import app
from worker import bot as bot_module
from worker import interactions as worker_interactions

if typing.TYPE_CHECKING:
    import pathlib

    from playground.discord import rest_state
    from tests.gateway.conftest import Stack


@contextlib.asynccontextmanager
async def worker(
    stack: Stack, bot: bot_module.Bot, **extra: str
) -> typing.AsyncIterator[app.WorkerApp]:
    settings = config.WorkerSettings.from_env(stack.env(**extra))
    replica = app.WorkerApp(settings, bot)
    try:
        await replica.start()
        yield replica
    finally:
        await replica.close()


def text_channel(stack: Stack) -> tuple[int, int]:
    guild = stack.discord.add_guild("g")
    return int(guild["id"]), int(stack.discord.channels_of(int(guild["id"]))[0]["id"])


async def test_an_injected_message_reaches_a_typed_listener_and_the_reply_reaches_discord(
    stack: Stack,
) -> None:
    discord = stack.discord
    guild_id, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    seen: list[hikari.Event] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        seen.append(event)
        if event.content == "!ping" and event.author_id != discord.world.bot_id:
            await event.message.respond("pong")

    async with worker(stack, bot) as replica, stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        assert replica.bot.events.listened_gateway_events() == ["MESSAGE_CREATE"]
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, discord.add_user("alice"), "!ping")
        await discord.wait_for(lambda: len(seen) >= 2, what="the message and the bot's own reply")
    first = seen[0]
    assert isinstance(first, hikari.GuildMessageCreateEvent)
    assert first.guild_id == guild_id
    assert first.content == "!ping"
    assert first.shard.id == 0
    posts = [c for c in discord.records.rest if c.method == "POST"]
    assert [p.body["content"] for p in posts] == ["pong"]


@pytest.mark.usefixtures("root_logging")
async def test_a_bot_authors_own_log_lines_say_which_shard_guild_and_event(stack: Stack) -> None:
    discord = stack.discord
    guild_id, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    out = io.StringIO()
    handler = shared_logging.configure("INFO", stream=out, fields={"pool": "main"})

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        logging.getLogger("mybot").info("saw %s", event.content)  # nothing passed but that

    try:
        async with worker(stack, bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            discord.send_message(channel_id, discord.add_user("alice"), "hello")
            await discord.wait_for(lambda: "saw hello" in out.getvalue(), what="the bot's line")
    finally:
        logging.getLogger().removeHandler(handler)
    [line] = [orjson.loads(x) for x in out.getvalue().splitlines() if '"saw hello"' in x]
    assert line["logger"] == "mybot"
    assert (line["guild"], line["shard"], line["event"]) == (str(guild_id), 0, "MESSAGE_CREATE")
    assert line["pool"] == "main"


async def test_a_poison_message_is_dead_lettered_with_its_reason_while_others_flow(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    seen: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        seen.append(event.content or "")

    channel = await stack.connection.channel()
    dead = await stack.topology.declare_dead_letter(channel)
    async with worker(stack, bot) as replica, stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        exchange = await channel.get_exchange(stack.topology.events_exchange)
        key = stack.topology.event_key("main", "MESSAGE_CREATE")
        await exchange.publish(aio_pika.Message(b"{not json"), key)
        await exchange.publish(aio_pika.Message(orjson.dumps({"v": 9, "t": "MESSAGE_CREATE"})), key)
        discord.send_message(channel_id, discord.add_user("bob"), "still flowing")
        await discord.wait_for(lambda: "still flowing" in seen)
        await discord.wait_for(
            lambda: replica.consumer is not None and replica.consumer.stats.dead_lettered == 2
        )
    reasons = []
    for _ in range(2):
        message = await dead.get(timeout=5)
        reasons.append(message.headers[topology.HEADER_REASON])
        await message.ack()
    assert any("not valid JSON" in str(r) for r in reasons)
    assert any("unsupported envelope version 9" in str(r) for r in reasons)


async def test_a_failing_handler_is_retried_then_dead_lettered_and_never_stops_the_consumer(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    attempts: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        attempts.append(event.content or "")
        if event.content == "boom":
            raise RuntimeError("handler bug")

    channel = await stack.connection.channel()
    dead = await stack.topology.declare_dead_letter(channel)
    delays = "0.1,0.1,0.1,0.1"
    async with (
        worker(stack, bot, RETRY_DELAYS=delays) as replica,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        user = discord.add_user("carol")
        discord.send_message(channel_id, user, "boom")
        discord.send_message(channel_id, user, "fine")
        await discord.wait_for(lambda: "fine" in attempts)
        await discord.wait_for(lambda: attempts.count("boom") == 5, timeout=20)
        assert replica.consumer is not None
        assert replica.consumer.stats.failures["MESSAGE_CREATE"] == 5
    message = await dead.get(timeout=10)
    assert message.headers[topology.HEADER_REASON] == "handler failed 5 times"
    assert message.headers[topology.HEADER_ERROR_TYPE] == "RuntimeError"
    assert message.headers[topology.HEADER_ERROR] == "handler bug"
    body = envelope.decode_message(message.body)
    assert body[0].d["content"] == "boom"
    await message.ack()


async def test_a_resume_replay_is_not_handled_twice(stack: Stack) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    handled: list[tuple[str, int]] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        handled.append((event.content or "", event.message_id))

    async with (
        worker(stack, bot) as replica,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway,
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, discord.add_user("dave"), "once")
        await discord.wait_for(lambda: len(handled) == 1)
        # The same dispatch published again, as a RESUME replay after a crash would.
        assert gateway.publisher is not None
        stream = gateway.publisher.streams[0]
        replayed = dict(discord.gateway.shards[0].buffer[-1])
        gateway.publisher.accept(stream, replayed["s"], "MESSAGE_CREATE", replayed["d"])
        await discord.wait_for(
            lambda: replica.consumer is not None and replica.consumer.stats.duplicates == 1
        )
    assert [h[0] for h in handled] == ["once"]


async def test_a_remote_shard_voice_update_reaches_the_gateway_holding_the_shard(
    stack: Stack,
) -> None:
    discord = stack.discord
    guild_id, channel_id = text_channel(stack)
    voice = discord.world.add_channel(guild_id, "voice", kind=2)
    bot = bot_module.Bot()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if event.content == "!join":
            await event.shard.update_voice_state(event.guild_id, int(voice["id"]), self_deaf=True)

    async with worker(stack, bot) as replica, stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.send_message(channel_id, discord.add_user("erin"), "!join")
        await discord.wait_for(lambda: discord.records.commands, what="op 4 at Discord")
        [command] = discord.records.commands
        assert command.op == 4
        assert command.d["channel_id"] == voice["id"]
        assert command.d["self_deaf"] is True
        # And without an event to answer: routed by shard to whichever gateway holds it.
        await replica.bot.shard_for(guild_id).update_voice_state(guild_id, None)
        await discord.wait_for(lambda: len(discord.records.commands) == 2)
        assert discord.records.commands[-1].d["channel_id"] is None


async def test_an_interaction_behind_a_backlog_is_deferred_within_three_seconds(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    slow = asyncio.Event()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        await asyncio.sleep(5)  # the backlog: ordinary events that take long

    @bot.listen(hikari.InteractionCreateEvent)
    async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
        assert isinstance(event.interaction, hikari.CommandInteraction)
        await asyncio.sleep(4)  # a handler slower than Discord's deadline
        await event.interaction.create_initial_response(
            hikari.ResponseType.MESSAGE_CREATE, "done at last"
        )
        slow.set()

    async with worker(stack, bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        user = discord.add_user("frank")
        discord.send_message(channel_id, user, "backlog: a handler busy for 5 s")
        await asyncio.sleep(0.2)
        interaction = discord.send_interaction(channel_id, user, "slow")
        await discord.wait_for(slow.is_set, timeout=15, what="the handler's late answer")
    callbacks = [c for c in discord.records.rest if c.path.endswith("/callback")]
    assert len(callbacks) == 1
    assert callbacks[0].status == 200  # hikari asks ?with_response=true
    assert callbacks[0].body["type"] == 5, "deferred"
    assert callbacks[0].at - interaction.created_at_wall < 3.0
    assert interaction.original is not None
    assert interaction.original["content"] == "done at last"


async def test_interactions_that_arrive_together_are_each_deferred_in_time(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    answered: list[int] = []

    @bot.listen(hikari.InteractionCreateEvent)
    async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
        assert isinstance(event.interaction, hikari.CommandInteraction)
        await asyncio.sleep(2.5)  # deferred by the worker; a batch-mate must not wait for it
        await event.interaction.create_initial_response(hikari.ResponseType.MESSAGE_CREATE, "late")
        answered.append(int(event.interaction.id))

    async with worker(stack, bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        user = discord.add_user("grace")
        # Sent at once: the gateway publishes them in one batch.
        sent = [discord.send_interaction(channel_id, user, "slow") for _ in range(3)]
        await discord.wait_for(lambda: len(answered) == 3, timeout=15, what="three answers")
    callbacks = [c for c in discord.records.rest if c.path.endswith("/callback")]
    assert len(callbacks) == 3
    for interaction in sent:
        [call] = [c for c in callbacks if f"/{interaction.id}/" in c.path]
        assert call.status == 200
        assert call.body["type"] == 5, "deferred"
        assert call.at - interaction.created_at_wall < 3.0
        assert interaction.original is not None
        assert interaction.original["content"] == "late"


def channel_messages(stack: Stack, channel_id: int) -> list[dict[str, typing.Any]]:
    return list(stack.discord.world.messages[channel_id].values())


async def test_an_ephemeral_answer_after_the_deferral_is_never_shown_to_the_channel(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    answered = asyncio.Event()

    @bot.listen(hikari.InteractionCreateEvent)
    async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
        assert isinstance(event.interaction, hikari.CommandInteraction)
        await asyncio.sleep(worker_interactions.DEFER_AFTER + 0.5)  # deferred by the worker
        await event.interaction.create_initial_response(
            hikari.ResponseType.MESSAGE_CREATE, "your secret", flags=hikari.MessageFlag.EPHEMERAL
        )
        answered.set()

    async with worker(stack, bot) as replica, stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        interaction = discord.send_interaction(channel_id, discord.add_user("eve"), "secret")
        await discord.wait_for(answered.is_set, timeout=15, what="the late answer")
        assert replica.bot.interactions.privately_answered == 1
    assert interaction.response is not None
    assert interaction.response["type"] == 5, "deferred"
    # The answer exists once, ephemeral; the public "thinking" message was settled and removed.
    [answer] = [m for m in channel_messages(stack, channel_id) if m["content"] == "your secret"]
    assert answer["flags"] & hikari.MessageFlag.EPHEMERAL
    assert [m["content"] for m in channel_messages(stack, channel_id)] == ["your secret"]
    assert [c.method for c in discord.records.rest if "/webhooks/" in c.path] == [
        "PATCH",
        "POST",
        "DELETE",
    ]


async def test_a_slow_click_answers_with_a_new_message_or_updates_the_clicked_one(
    stack: Stack,
) -> None:
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    done: list[str] = []

    @bot.listen(hikari.InteractionCreateEvent)
    async def on_click(event: hikari.InteractionCreateEvent) -> None:
        assert isinstance(event.interaction, hikari.ComponentInteraction)
        await asyncio.sleep(worker_interactions.DEFER_AFTER + 0.5)  # deferred by the worker
        if event.interaction.custom_id == "new":
            await event.interaction.create_initial_response(
                hikari.ResponseType.MESSAGE_CREATE, "a new message"
            )
        else:
            await event.interaction.create_initial_response(
                hikari.ResponseType.MESSAGE_UPDATE, "the clicked message, updated"
            )
        done.append(event.interaction.custom_id)

    buttons = [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 1, "label": "New", "custom_id": "new"},
                {"type": 2, "style": 1, "label": "Update", "custom_id": "update"},
            ],
        }
    ]
    clicked = discord.rest.post_message(
        channel_id, discord.world.bot_user, {"content": "pick one", "components": buttons}
    )
    user = discord.add_user("finn")
    async with worker(stack, bot), stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        discord.click(clicked, user, "new")
        await discord.wait_for(lambda: done == ["new"], timeout=15, what="the new message")
        assert clicked["content"] == "pick one"  # the deferred update did not take it over
        assert [m["content"] for m in channel_messages(stack, channel_id)] == [
            "pick one",
            "a new message",
        ]
        discord.click(clicked, user, "update")
        await discord.wait_for(lambda: len(done) == 2, timeout=15, what="the update")
    assert clicked["content"] == "the clicked message, updated"
    assert len(channel_messages(stack, channel_id)) == 2
    callbacks = [c.body["type"] for c in discord.records.rest if c.path.endswith("/callback")]
    assert callbacks == [6, 6], "both deferred as updates of the clicked message"


async def test_a_worker_killed_mid_handler_leaves_the_event_to_another_replica(
    stack: Stack,
    tmp_path: pathlib.Path,
) -> None:
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    discord = stack.discord
    _, channel_id = text_channel(stack)
    mark = tmp_path / "stalling"
    env = {
        **os.environ,
        **stack.env(WORKER_PLUGINS="tests.worker.plugin_stall"),
        "STALL_MARK": str(mark),
    }
    # Popen returns at once; the test waits for the process in an executor.
    doomed = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "worker"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            publisher = gateway.publisher
            assert publisher is not None
            # The replica has bound its queue and the gateway knows its interests (until then
            # the gateway publishes everything, and nothing is bound yet to route it).
            await discord.wait_for(
                lambda: "MESSAGE_CREATE" in (publisher.interests or ()),
                timeout=30,
                what="interests",
            )
            discord.send_message(channel_id, discord.add_user("gina"), "in flight")
            await discord.wait_for(lambda: publisher.stats.published_events >= 1)
            # Taken by the stalling replica (its handler runs, the message stays unacked).
            await discord.wait_for(mark.exists, timeout=30, what="the stalling replica's handler")
            doomed.send_signal(signal.SIGKILL)
            await asyncio.get_running_loop().run_in_executor(None, doomed.wait)
            bot = bot_module.Bot()
            seen: list[str] = []

            @bot.listen(hikari.GuildMessageCreateEvent)
            async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
                seen.append(event.content or "")

            async with worker(stack, bot):
                await discord.wait_for(lambda: "in flight" in seen, timeout=20)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert seen.count("in flight") == 1


async def test_a_worker_fills_the_cache_with_a_large_guilds_members_through_op_8(
    stack: Stack,
) -> None:
    discord = stack.discord
    guild_id, _ = text_channel(stack)
    for index in range(2500):
        discord.add_member(guild_id, discord.add_user(f"member{index}"), announce=False)
    bot = bot_module.Bot()

    @bot.listen(hikari.GuildAvailableEvent)
    async def noop(event: hikari.GuildAvailableEvent) -> None:
        del event

    async with worker(stack, bot) as replica, stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        cache = replica.bot.cache
        assert cache is not None
        before = len(await cache.member_ids(guild_id))
        await replica.bot.shard_for(guild_id).request_guild_members(guild_id, nonce="fill")
        expected = len(discord.world.members[guild_id])

        async def filled() -> bool:
            return len(await cache.member_ids(guild_id)) == expected

        for _ in range(200):
            if await filled():
                break
            await asyncio.sleep(0.05)
        assert await filled()
    assert before <= 250
    assert [c.op for c in discord.records.commands] == [8]


async def test_health_and_metrics_of_a_replica(stack: Stack) -> None:
    import aiohttp  # noqa: PLC0415

    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if event.content == "fail":
            raise RuntimeError("on purpose")

    async with (
        worker(stack, bot) as replica,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
        aiohttp.ClientSession() as http,
    ):
        assert replica.health is not None
        base = f"http://127.0.0.1:{replica.health.port}"
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        user = discord.add_user("hank")
        discord.send_message(channel_id, user, "ok")
        discord.send_message(channel_id, user, "fail")
        assert replica.consumer is not None
        consumer = replica.consumer
        await discord.wait_for(lambda: consumer.stats.failures["MESSAGE_CREATE"] >= 1)
        await discord.wait_for(lambda: consumer.stats.handled["MESSAGE_CREATE"] >= 1)
        # A poison message: the dead-letter queue's depth is what operators alert on.
        channel = await stack.connection.channel()
        exchange = await channel.get_exchange(stack.topology.events_exchange)
        await exchange.publish(
            aio_pika.Message(b"{not json"), stack.topology.event_key("main", "MESSAGE_CREATE")
        )
        await discord.wait_for(lambda: consumer.stats.dead_lettered == 1)
        depths = replica.queue_depths
        assert depths is not None
        dead_letter = stack.topology.dead_letter_queue
        for _ in range(100):  # RabbitMQ counts a quorum queue's new message a moment later
            await depths.read()  # what its loop does every few seconds
            if dead_letter in depths.depths and depths.depths[dead_letter].messages:
                break
            await asyncio.sleep(0.1)
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200
        async with http.get(f"{base}/livez") as response:
            assert response.status == 200
        samples = await exposition.scrape(http, f"{base}/metrics")
        text = replica.render_metrics()
    replica_labels = {"group": "default", "pool": "main"}
    labels = {**replica_labels, "event": "MESSAGE_CREATE"}
    assert value(samples, "shardline_worker_events_handled_total", **labels) == 1
    assert value(samples, "shardline_worker_handler_failures_total", **labels) >= 1
    handled = value(samples, "shardline_worker_handler_seconds_count", **labels)
    assert handled >= 1
    assert value(samples, "shardline_worker_handler_seconds_bucket", **labels, le="+Inf") == handled
    assert value(samples, "shardline_worker_event_age_seconds_count", **replica_labels) >= 1
    # "ok" and "fail" may share a message (a batch); the poison message is its own.
    assert value(samples, "shardline_worker_messages_consumed_total", **replica_labels) >= 2
    # The failed one waits in a retry queue (delayed redelivery), not requeued at once.
    assert value(samples, "shardline_worker_retries_total", **replica_labels) >= 1
    assert value(samples, "shardline_worker_dead_lettered_total", **replica_labels) == 1
    # The REST limiter: shared through Redis, no 429 taken.
    assert value(samples, "shardline_worker_rest_limiter_shared", **replica_labels) == 1
    limited = "shardline_worker_rest_rate_limited_total"
    for scope in ("global", "route"):
        assert value(samples, limited, **replica_labels, scope=scope) == 0
    # Queue depths: the group's queues (consumed by this replica) and the dead letter.
    queue = {**replica_labels, "queue": stack.topology.worker_queue("main", "default")}
    assert value(samples, "shardline_worker_queue_messages", **queue) == 0
    assert value(samples, "shardline_worker_queue_consumers", **queue) == 1
    # The poison message, and perhaps already the failing one past its delivery limit.
    assert value(samples, "shardline_worker_dead_letter_messages", **replica_labels) >= 1
    # Exactly what the dashboards and alerts are checked against (tests/deploy); this replica
    # leads no service, so that family has no sample.
    sampled = {name for name, _ in samples if name.startswith("shardline_")}
    assert exported.WORKER - sampled == {"shardline_worker_service_leader"}
    assert sampled <= exported.WORKER
    assert {name for name, _ in samples} >= exported.PROCESS
    assert discord.token not in text


async def test_listeners_read_settings_a_write_on_another_replica_just_changed(
    stack: Stack,
) -> None:
    discord = stack.discord
    guild_id, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    replies: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if event.author_id == discord.world.bot_id:
            return
        store = typing.cast("bot_module.Bot", event.app).settings
        assert store is not None
        prefix = (await store.guild(guild_id)).prefix or "!"
        replies.append(prefix)
        await event.message.respond(f"my prefix is {prefix}")

    async with (
        worker(stack, bot) as reader,
        worker(stack, bot_module.Bot(), WORKER_GROUP="admin") as writer,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"),
    ):
        assert reader.bot.settings is not None
        assert writer.bot.settings is not None
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        user = discord.add_user("alice")
        discord.send_message(channel_id, user, "what is the prefix?")
        await discord.wait_for(lambda: len(replies) == 1)
        await writer.bot.settings.set_prefix(guild_id, "?")
        discord.send_message(channel_id, user, "and now?")
        await discord.wait_for(lambda: len(replies) == 2)
    assert replies == ["!", "?"]
    assert reader.bot.settings.stats.mongo_reads == 1


async def test_a_services_only_replica_serves_valid_metrics(stack: Stack) -> None:
    import aiohttp  # noqa: PLC0415

    bot = bot_module.Bot()
    # Declared by the pool's gateways and event workers; until it is, its depth is unknown.
    await stack.topology.declare_dead_letter(await stack.connection.channel())
    async with (
        worker(stack, bot, WORKER_ROLES="services") as replica,
        aiohttp.ClientSession() as http,
    ):
        assert replica.health is not None
        assert replica.consumer is None
        samples = await exposition.scrape(http, f"http://127.0.0.1:{replica.health.port}/metrics")
    replica_labels = {"group": "default", "pool": "main"}
    assert value(samples, "shardline_worker_messages_consumed_total", **replica_labels) == 0
    assert value(samples, "shardline_worker_dead_letter_messages", **replica_labels) == 0
    assert not [name for name, _ in samples if name == "shardline_worker_queue_messages"]


FAST_RETRIES: typing.Final = "0.1,0.1,0.1,0.1"


async def expired_in_the_queue(
    stack: Stack, bot: bot_module.Bot, channel_id: int
) -> rest_state.Interaction:
    """With the gateway holding shard 0: a replica declares its queues and stops, then an
    interaction waits there until Discord no longer knows it (over 3 s)."""
    discord = stack.discord
    await discord.wait_for(lambda: discord.connected_shards() == [0])
    async with worker(stack, bot, RETRY_DELAYS=FAST_RETRIES):
        pass  # its queues now exist: what comes next waits there
    interaction = discord.send_interaction(channel_id, discord.add_user("gus"), "late")
    await asyncio.sleep(3.5)  # Discord forgets it
    return interaction


def answering_bot() -> tuple[bot_module.Bot, list[int]]:
    """A bot that answers every slash command "hi", and the ids of those it ran."""
    bot = bot_module.Bot()
    ran: list[int] = []

    @bot.listen(hikari.InteractionCreateEvent)
    async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
        assert isinstance(event.interaction, hikari.CommandInteraction)
        ran.append(int(event.interaction.id))
        await event.interaction.create_initial_response(hikari.ResponseType.MESSAGE_CREATE, "hi")

    return bot, ran


async def test_an_interaction_that_expired_in_the_queue_is_settled_not_retried(
    stack: Stack,
) -> None:
    """Soak seed 753623: after a broker restart, interactions older than 3 s reached the
    workers; Discord answered 10062 Unknown interaction and each went round the retry queues
    five times. Running it again can only meet the same answer."""
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot, ran = answering_bot()
    channel = await stack.connection.channel()
    dead = await stack.topology.declare_dead_letter(channel)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        interaction = await expired_in_the_queue(stack, bot, channel_id)
        async with worker(stack, bot, RETRY_DELAYS=FAST_RETRIES) as replica:
            await discord.wait_for(lambda: ran == [interaction.id], timeout=10)
            assert replica.consumer is not None
            await discord.wait_for(
                lambda: (
                    replica.consumer is not None
                    and replica.consumer.stats.expired_interactions == 1
                ),
                timeout=10,
            )
            await asyncio.sleep(1.0)  # four retries at 0.1 s would have run by now
            assert ran == [interaction.id]
            assert replica.consumer.stats.failures["INTERACTION_CREATE"] == 0
            assert replica.consumer.stats.retried == 0
    assert await dead.get(fail=False, timeout=1) is None
    assert all(c.status == 404 for c in discord.records.rest if c.path.endswith("/callback"))


async def test_an_expired_interaction_does_not_hide_another_listeners_failure(
    stack: Stack,
) -> None:
    """Settled only when every failure is Discord's 10062: another listener's error is still
    retried (a review of the expired-interaction change)."""
    discord = stack.discord
    _, channel_id = text_channel(stack)
    bot = bot_module.Bot()
    flaky: list[int] = []

    @bot.listen(hikari.InteractionCreateEvent)
    async def answer(event: hikari.InteractionCreateEvent) -> None:
        assert isinstance(event.interaction, hikari.CommandInteraction)
        await event.interaction.create_initial_response(hikari.ResponseType.MESSAGE_CREATE, "hi")

    @bot.listen(hikari.InteractionCreateEvent)
    async def record(event: hikari.InteractionCreateEvent) -> None:
        flaky.append(int(event.interaction.id))
        if len(flaky) == 1:
            raise RuntimeError("a database blip")

    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        interaction = await expired_in_the_queue(stack, bot, channel_id)
        async with worker(stack, bot, RETRY_DELAYS=FAST_RETRIES) as replica:
            consumer = replica.consumer
            assert consumer is not None
            await discord.wait_for(lambda: consumer.stats.expired_interactions == 1, timeout=10)
            assert flaky == [interaction.id, interaction.id]  # retried, then it succeeded
            assert consumer.stats.failures["INTERACTION_CREATE"] == 1
            assert consumer.stats.retried == 1


async def _answered_then_delivered(
    stack: Stack, channel_id: int, *, replay: bool
) -> rest_state.Interaction:
    """Another replica has answered an interaction; then its envelope reaches this one, as a
    gateway's replay (flagged) or as a first delivery (not)."""
    discord = stack.discord
    interaction = discord.send_interaction(channel_id, discord.add_user("gus"), "twice")
    callback = f"{discord.api_url}/interactions/{interaction.id}/{interaction.token}/callback"
    async with (  # the replica that answered first
        aiohttp.ClientSession() as session,
        session.post(callback, json={"type": 4, "data": {"content": "first"}}) as answered,
    ):
        assert answered.status == 204
    item = envelope.wire(
        "main",
        "gw",
        "rq",
        0,
        1,
        "s",
        interaction.id % 10**6,
        "INTERACTION_CREATE",
        interaction.payload,
        time.time(),
    )
    channel = await stack.connection.channel()
    exchange = await channel.get_exchange(stack.topology.events_exchange)
    await exchange.publish(
        aio_pika.Message(orjson.dumps(item), headers={topology.HEADER_REPLAY: 1} if replay else {}),
        stack.topology.event_key("main", "INTERACTION_CREATE"),
    )
    return interaction


async def test_a_replayed_interaction_another_replica_answered_is_settled_not_retried(
    stack: Stack,
) -> None:
    """Soak seed 766573: while Redis hung, a gateway's replay of an interaction ran on a second
    replica (interactions are never held for Redis); Discord refused its answer with 40060
    "already acknowledged" and it went round the retry queues. A copy that was answered
    elsewhere can only meet the same answer: settled. A first delivery meeting 40060 is a
    failure like any other (a plugin answering twice): retried."""
    _, channel_id = text_channel(stack)
    bot, ran = answering_bot()
    channel = await stack.connection.channel()
    dead = await stack.topology.declare_dead_letter(channel)
    async with worker(stack, bot, RETRY_DELAYS=FAST_RETRIES) as replica:
        consumer = replica.consumer
        assert consumer is not None
        replayed = await _answered_then_delivered(stack, channel_id, replay=True)
        await stack.discord.wait_for(
            lambda: consumer.stats.interactions_answered_elsewhere == 1, timeout=10
        )
        await asyncio.sleep(1.0)  # four retries at 0.1 s would have run by now
        assert ran == [replayed.id]
        assert consumer.stats.failures["INTERACTION_CREATE"] == 0
        assert consumer.stats.retried == 0
        assert await dead.get(fail=False, timeout=1) is None
        assert replayed.response == {"type": 4, "data": {"content": "first"}}

        first = await _answered_then_delivered(stack, channel_id, replay=False)
        await stack.discord.wait_for(lambda: consumer.stats.retried >= 1, timeout=10)
        assert consumer.stats.interactions_answered_elsewhere == 1
        assert consumer.stats.failures["INTERACTION_CREATE"] >= 1
        assert first.id in ran
