"""The operator CLI against a locally running system: gateways, a worker, RabbitMQ, Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing

import aio_pika
import hikari
import orjson
import pytest

from cli.exit_codes import ExitCode
from shared import admin, config, envelope, reshard, topology
from shared.secret import Secret
from tests.cli.running import json_document, run, shardline
from worker import app as worker_app
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack

# The keys of each --json document, as docs/operations.md lists them.
STATUS_KEYS: typing.Final = {
    "pool", "namespace", "shard_count", "gateways", "shards", "workers", "queues", "dead_letters",
}  # fmt: skip
GATEWAY_KEYS: typing.Final = {
    "gateway", "state", "shards", "connected", "backlog", "breakers", "seen_s_ago",
    "session_start_wait_s",
}  # fmt: skip
SHARD_KEYS: typing.Final = {
    "shard", "gateway", "state", "latency_ms", "guilds", "session_age_s", "seq", "session",
}  # fmt: skip
WORKER_KEYS: typing.Final = {
    "worker", "group", "consumed", "handled", "failures", "dead_lettered", "duplicates", "breakers",
}  # fmt: skip
QUEUE_KEYS: typing.Final = {"queue", "ready", "consumers"}
DEAD_LETTER_KEYS: typing.Final = {"id", "routing_key", "exchange", "bytes", "reason", "error"}
PLAN_KEYS: typing.Final = {
    "current", "target", "max_concurrency", "session_starts_needed",
    "session_starts_remaining", "identify_seconds", "guilds_per_shard", "assignments",
    "problems",
}  # fmt: skip
ANSWER_KEYS: typing.Final = {"role", "process", "ok", "value", "error"}
RESHARD_KEYS: typing.Final = {"action", "state", "source", "target"}


@contextlib.asynccontextmanager
async def worker(stack: Stack, bot: bot_module.Bot) -> typing.AsyncIterator[worker_app.WorkerApp]:
    replica = worker_app.WorkerApp(config.WorkerSettings.from_env(stack.env()), bot)
    try:
        await replica.start()
        yield replica
    finally:
        await replica.close()


@pytest.mark.usefixtures("operator_env")
async def test_status_shows_gateways_shards_workers_and_queues(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    discord = stack.discord
    discord.add_guild("a", shard=(0, 2))
    discord.add_guild("b", shard=(1, 2))
    bot = bot_module.Bot()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        del event

    async with worker(stack, bot) as replica, stack.gateway(SHARD_COUNT="2") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1])
        assert gateway.group is not None
        await discord.wait_for(lambda: all(s.connected for s in gateway.group.stats.values()))
        await gateway.write_status()
        await replica.write_status()
        code, out = await shardline(capsys, "status")
        ran = await run(capsys, "--json", "status")
    assert code == 0
    assert "2 shards" in out
    assert gateway.gateway_id in out
    assert replica.worker_id in out
    shard_lines = [line for line in out.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert len(shard_lines) == 2
    assert all("connected" in line and gateway.gateway_id in line for line in shard_lines)
    assert stack.topology.worker_queue("main", "default") in out
    assert stack.topology.dead_letter_queue in out
    assert ran.code == 0
    assert ran.err == ""
    doc = ran.document()
    assert set(doc) == STATUS_KEYS
    assert (doc["pool"], doc["namespace"], doc["shard_count"]) == ("main", stack.namespace, 2)
    [gateway_row] = doc["gateways"]
    assert set(gateway_row) == GATEWAY_KEYS
    assert gateway_row["gateway"] == gateway.gateway_id
    assert (gateway_row["state"], gateway_row["shards"], gateway_row["connected"]) == (
        "serving", 2, 2,
    )  # fmt: skip
    assert [set(s) for s in doc["shards"]] == [SHARD_KEYS, SHARD_KEYS]
    assert [(s["shard"], s["state"], s["gateway"], s["guilds"]) for s in doc["shards"]] == [
        (0, "connected", gateway.gateway_id, 1), (1, "connected", gateway.gateway_id, 1),
    ]  # fmt: skip
    [worker_row] = doc["workers"]
    assert set(worker_row) == WORKER_KEYS
    assert (worker_row["worker"], worker_row["group"]) == (replica.worker_id, "default")
    assert gateway_row["breakers"] == {"redis": "closed"}
    assert worker_row["breakers"] == {"redis": "closed", "mongodb": "closed"}
    assert all(set(q) == QUEUE_KEYS for q in doc["queues"])
    assert stack.topology.worker_queue("main", "default") in {q["queue"] for q in doc["queues"]}
    assert doc["dead_letters"] == {"queue": stack.topology.dead_letter_queue, "ready": 0}


@pytest.mark.usefixtures("operator_env")
async def test_drain_hands_shards_to_the_other_gateway_with_resumes_only(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    discord = stack.discord
    async with (
        stack.gateway(SHARD_COUNT="2", LEASE_TTL="3") as first,
        stack.gateway(SHARD_COUNT="2", LEASE_TTL="3") as second,
    ):
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1], timeout=20)

        def settled() -> bool:
            groups = [g.group for g in (first, second) if g.group is not None]
            return [len(g.shards) for g in groups] == [1, 1] and all(
                s.connected for g in groups for s in g.stats.values()
            )

        await discord.wait_for(settled, timeout=20)
        await asyncio.sleep(1.0)
        identifies = len(discord.records.identifies)
        resumes = len(discord.records.resumes)
        moved = next(iter(first.group.shards))
        await first.write_status()
        code, drained = await json_document(capsys, "drain", first.gateway_id)
        assert code == 0
        assert drained == {"gateway": first.gateway_id, "state": "draining"}
        await discord.wait_for(lambda: len(second.group.shards) == 2, timeout=20)
        await first.write_status()
        assert not first.group.shards
        code, out = await shardline(capsys, "status")
        assert f"{first.gateway_id}  draining" in out
        code, doc = await json_document(capsys, "status")
        states = {g["gateway"]: (g["state"], g["shards"]) for g in doc["gateways"]}
        assert states[first.gateway_id] == ("draining", 0)
    assert len(discord.records.identifies) == identifies  # no new session
    accepted = [r.shard_id for r in discord.records.resumes[resumes:] if r.accepted]
    assert accepted == [moved]


@pytest.mark.usefixtures("operator_env")
async def test_dead_letters_are_listed_with_their_reason_and_replayed(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []
    bot = bot_module.Bot()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        seen.append(event.content or "")

    guild = stack.discord.add_guild("g")
    channel_id = int(stack.discord.channels_of(int(guild["id"]))[0]["id"])
    message = stack.discord.world.make_message(channel_id, stack.discord.add_user("u"), "again")
    item = {
        "v": 1, "pool": "main", "gateway": "gw", "reply_to": "rq", "shard": [0, 1],
        "session": "s", "seq": 7, "t": "MESSAGE_CREATE", "d": message, "ts": 0.0,
    }  # fmt: skip
    channel = await stack.connection.channel()
    await stack.topology.declare_dead_letter(channel)
    dead = await channel.get_exchange(stack.topology.dead_letter_exchange)
    key = topology.Topology.event_key("main", "MESSAGE_CREATE")
    await dead.publish(
        aio_pika.Message(
            orjson.dumps(item),
            headers={topology.HEADER_REASON: "handler failed 5 times"},
            content_type=envelope.CONTENT_TYPE,
            message_id="dead-1",
        ),
        routing_key=key,
    )
    await asyncio.sleep(0.3)
    code, out = await shardline(capsys, "dead-letters")
    assert code == 0
    assert "dead-1" in out
    assert key in out
    assert "handler failed 5 times" in out
    code, doc = await json_document(capsys, "dead-letters")
    assert code == 0
    assert doc == {
        "queue": stack.topology.dead_letter_queue,
        "dead_letters": [{
            "id": "dead-1", "routing_key": key, "exchange": "",
            "bytes": len(orjson.dumps(item)), "reason": "handler failed 5 times", "error": None,
        }],
    }  # fmt: skip
    assert set(doc["dead_letters"][0]) == DEAD_LETTER_KEYS
    code, doc = await json_document(capsys, "replay", "--reason", "nothing like it")
    assert (code, doc) == (
        0,
        {"replayed": 0, "skipped": 1, "exchange": stack.topology.events_exchange},
    )
    # Before any worker or gateway declared the events exchange there is nowhere to put it.
    ran = await run(capsys, "replay", "--json")
    assert ran.code == ExitCode.PROBLEM
    assert ran.error_line.startswith(
        f"shardline: there is no exchange {stack.topology.events_exchange} to replay to"
    )
    code, doc = await json_document(capsys, "dead-letters")
    assert [d["id"] for d in doc["dead_letters"]] == ["dead-1"]
    async with worker(stack, bot):
        code, out = await shardline(capsys, "replay", "--reason", "handler failed")
        assert "replayed 1" in out
        await stack.discord.wait_for(lambda: seen == ["again"])
    code, out = await shardline(capsys, "dead-letters")
    assert "dead-1" not in out
    code, doc = await json_document(capsys, "dead-letters")
    assert doc["dead_letters"] == []


@pytest.mark.usefixtures("operator_env")
async def test_a_reshard_plan_changes_nothing_and_says_what_it_takes(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    discord = stack.discord
    async with stack.gateway(SHARD_COUNT="2") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1])
        await gateway.write_status()
        sessions = {
            s: await stack.redis.hget(stack.keys.session(s, 2), "session_id") for s in (0, 1)
        }
        code, out = await shardline(
            capsys, "reshard-plan", "--shards", "4", "--max-concurrency", "2"
        )
        assert code == 0, out
        assert "2 -> 4 shards" in out
        assert "at least 5 s" in out  # two identify waves of two, five seconds apart
        assert f"{gateway.gateway_id}  0-3" in out
        assert {
            s: await stack.redis.hget(stack.keys.session(s, 2), "session_id") for s in (0, 1)
        } == sessions
        code, plan = await json_document(
            capsys, "reshard-plan", "--shards", "4", "--max-concurrency", "2"
        )
        assert code == 0
        assert set(plan) == PLAN_KEYS
        assert (plan["current"], plan["target"], plan["max_concurrency"]) == (2, 4, 2)
        assert (plan["session_starts_needed"], plan["identify_seconds"]) == (4, 5.0)
        assert plan["assignments"] == [{"gateway": gateway.gateway_id, "first": 0, "last": 3}]
        assert plan["problems"] == []
        code, out = await shardline(capsys, "reshard-plan", "--shards", "2")
        assert code == 1
        assert "already runs 2 shards" in out
        # A plan with problems is still the whole result, on stdout (and exit status 1).
        code, plan = await json_document(capsys, "reshard", "--shards", "2", "--dry-run")
        assert code == ExitCode.PROBLEM
        assert plan["problems"] == ["the pool already runs 2 shards"]
    assert len(discord.records.identifies) == 2


@pytest.mark.usefixtures("operator_env")
async def test_restart_one_shard_resumes_it_where_it_runs(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    discord = stack.discord
    async with stack.gateway(SHARD_COUNT="2", SHARD_IDS="0-1") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1])
        assert gateway.group is not None
        await discord.wait_for(lambda: all(s.connected for s in gateway.group.stats.values()))
        identifies = len(discord.records.identifies)
        ran = await run(capsys, "restart-shard", "1", "--wait", "--timeout", "15", "--json")
        assert ran.code == 0, ran
        assert ran.document() == {"shard": 1, "shard_count": 2, "state": "taken"}
        assert ran.err == "asked the gateway holding shard 1 to restart it (it resumes)\n"
        await discord.wait_for(lambda: [r.shard_id for r in discord.records.resumes] == [1])
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1])
    assert len(discord.records.identifies) == identifies
    assert discord.records.resumes[0].accepted


@pytest.mark.usefixtures("operator_env")
async def test_operator_actions_not_signed_with_the_admin_key_are_refused(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """What a worker (or anyone with the pool's Redis password, not the admin key) can write
    steers no gateway: a drain, a restart and a re-shard record, unsigned or signed with
    another key, are refused with a reason in the gateway's log."""
    discord = stack.discord
    redis, pool_keys = stack.redis, stack.keys
    async with stack.gateway(SHARD_COUNT="2", LEASE_TTL="3") as gateway:
        assert gateway.group is not None
        group = gateway.group
        await discord.wait_for(lambda: sorted(group.shards) == [0, 1], timeout=20)
        await discord.wait_for(lambda: all(s.connected for s in group.stats.values()))
        identifies = len(discord.records.identifies)
        stranger = Secret("s" * 64)
        await redis.hset(pool_keys.drain_requests(), gateway.gateway_id, "1")
        await redis.sadd(pool_keys.draining(), gateway.gateway_id)
        forged = admin.sign(stranger, pool_keys.prefix, admin.RESTART_SHARD, shard=1)
        await redis.hset(pool_keys.restart_requests(), "1", forged)
        await redis.hset(
            pool_keys.reshard(),
            items=["source", "2", "target", "4", "state", "retiring", "at", "1.0"],
        )

        def refusals() -> dict[str, str]:
            return {
                r.getMessage(): str(getattr(r, "reason", ""))
                for r in caplog.records
                if r.getMessage().endswith("refused")
            }

        # Each is refused once, with the reason; the restart request is taken off the hash.
        await discord.wait_for(lambda: len(refusals()) == 3, timeout=15, what="three refusals")
        assert refusals() == {
            "drain request refused": "not a signed action",
            "restart request refused": "bad signature (signed with another ADMIN_KEY, or altered)",
            "re-shard record refused": "not signed",
        }
        await asyncio.sleep(2 * gateway.settings.lease_ttl / 3)  # two more lease rounds
        assert sorted(group.shards) == [0, 1]
        assert not gateway.retired
        assert gateway.leases is not None
        assert not gateway.leases.draining
        # The gateway speaks for itself: the set others read no longer names it.
        assert not await redis.sismember(pool_keys.draining(), gateway.gateway_id)
        assert not await redis.hexists(pool_keys.restart_requests(), "1")
        assert discord.records.resumes == []
        # The same drain, signed by the operator, is followed.
        code, out = await shardline(capsys, "drain", gateway.gateway_id)
        assert code == 0, out
        await discord.wait_for(lambda: gateway.leases is not None and gateway.leases.draining)
    assert len(discord.records.identifies) == identifies
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert stranger.reveal() not in logged
    assert stack.admin_key.reveal() not in logged


@pytest.mark.usefixtures("operator_env")
async def test_the_cli_signs_nothing_without_the_admin_key(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADMIN_KEY")
    for argv in (
        ["drain", "main-00000000"],
        ["restart-shard", "0"],
        ["reshard", "--shards", "4"],
        ["reshard", "--shards", "4", "--abort", "--dry-run"],
        ["reshard", "--shards", "4", "--forget"],
    ):
        ran = await run(capsys, *argv, "--json")
        assert ran.code == ExitCode.NOT_AUTHORIZED == 5
        assert "set ADMIN_KEY (or ADMIN_KEY_FILE)" in ran.error_line
    # Taking a drain back needs no key: the gateway returns to what it does unasked.
    await stack.redis.hset(stack.keys.drain_requests(), "main-00000000", "x")
    code, doc = await json_document(capsys, "undrain", "main-00000000")
    assert (code, doc) == (0, {"gateway": "main-00000000", "request_removed": True})
    assert not await stack.redis.hexists(stack.keys.drain_requests(), "main-00000000")


@pytest.mark.usefixtures("operator_env")
async def test_a_reshard_record_the_key_does_not_vouch_for_is_explained_and_can_be_forgotten(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a key rotation (or from before signing) the record blocks reshard with one line
    saying what to do; --forget removes it, but never a re-shard under way."""
    other_key = Secret("o" * 64)
    old = reshard.Reshard(1, 2, reshard.State.DONE)
    await reshard.save(stack.redis, stack.keys, old, other_key)
    ran = await run(capsys, "reshard", "--shards", "4", "--abort")
    assert ran.code == ExitCode.NOT_AUTHORIZED
    assert "not vouched for (bad signature" in ran.error_line
    assert "shardline reshard --forget" in ran.error_line
    code, out = await shardline(capsys, "reshard", "--shards", "4", "--forget")
    assert code == 0
    assert "forgot the re-shard record (bad signature" in out
    assert not await stack.redis.exists(stack.keys.reshard())
    await reshard.save(
        stack.redis, stack.keys, reshard.Reshard(1, 2, reshard.State.DONE), stack.admin_key
    )
    code, doc = await json_document(capsys, "reshard", "--shards", "2", "--forget")
    assert code == 0
    assert set(doc) == RESHARD_KEYS
    assert doc == {"action": "forget", "state": "forgotten", "source": 1, "target": 2}
    underway = reshard.Reshard(1, 2, reshard.State.WARMING)
    await reshard.save(stack.redis, stack.keys, underway, stack.admin_key)
    ran = await run(capsys, "reshard", "--shards", "2", "--forget", "--json")
    assert ran.code == ExitCode.PROBLEM
    assert "a re-shard is warming" in ran.error_line
    assert await stack.redis.exists(stack.keys.reshard())
    code, doc = await json_document(capsys, "reshard", "--shards", "2", "--abort")
    assert code == 0
    assert doc == {"action": "abort", "state": "aborted", "source": 1, "target": 2}
    record = await reshard.load(stack.redis, stack.keys, stack.admin_key)
    assert record is not None
    assert record.state is reshard.State.ABORTED


@pytest.mark.usefixtures("operator_env")
async def test_restart_of_a_shard_no_gateway_serves_is_refused_by_the_cli(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = await run(capsys, "restart-shard", "5")
    assert ran.code == ExitCode.PROBLEM
    assert ran.error_line == "shardline: no serving gateway holds shard 5; see shardline status"
    assert not await stack.redis.exists(stack.keys.restart_requests())


@pytest.mark.usefixtures("operator_env")
async def test_ask_gathers_every_process_answer(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        worker(stack, bot_module.Bot()) as replica,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway,
    ):
        await stack.discord.wait_for(
            lambda: gateway.group is not None and gateway.group.stats[0].connected
        )
        deadline = time.monotonic() + 15
        while not await stack.redis.exists(stack.keys.gateway_status(gateway.gateway_id)):
            assert time.monotonic() < deadline, "the gateway's first status write"
            await asyncio.sleep(0.05)
        code, out = await shardline(capsys, "ask", "stats", "--timeout", "10")
        assert code == 0, out
        assert gateway.gateway_id in out
        assert replica.worker_id in out
        code, doc = await json_document(capsys, "ask", "stats", "--timeout", "10")
        assert code == 0
        assert doc["question"] == "stats"
        assert all(set(a) == ANSWER_KEYS for a in doc["answers"])
        assert {(a["role"], a["process"], a["ok"]) for a in doc["answers"]} == {
            ("gateway", gateway.gateway_id, True), ("worker", replica.worker_id, True),
        }  # fmt: skip
        assert all(a["error"] is None and a["value"] is not None for a in doc["answers"])
        code, out = await shardline(capsys, "ask", "nope", "--role", "worker", "--timeout", "10")
        assert code == 1
        assert "has no handler 'nope'" in out
        code, doc = await json_document(
            capsys, "ask", "nope", "--role", "worker", "--timeout", "10"
        )
        assert code == ExitCode.PROBLEM
        [answer] = doc["answers"]
        assert (answer["process"], answer["ok"], answer["value"]) == (
            replica.worker_id,
            False,
            None,
        )
        assert answer["error"]["type"] == "UnknownMethodError"
        assert "has no handler 'nope'" in answer["error"]["message"]
