"""The platform under load while things fail: worker and gateway processes killed and
stopped, a RECONNECT/INVALID_SESSION storm, the platform's Redis restarted, RabbitMQ killed and
restarted, MongoDB restarted while commands flow, malformed and oversized envelopes, one user
flooding commands. Each scenario counts what was lost and handled twice (the recording plugin
counts every handler run in Redis) and bounds the recovery time.

Run alone with ``bash tests/run.sh -m fault``; the suite prints a summary table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
import typing

import aio_pika
import orjson
import pytest
import redis.asyncio as aioredis

from shared import envelope, topology
from tests import servers
from tests.faults.conftest import Row

if typing.TYPE_CHECKING:
    import pathlib

    from tests.gateway.conftest import Stack

pytestmark = pytest.mark.fault

#: Messages in flight in a replica that dies: its prefetch (worker.app.PREFETCH).
IN_FLIGHT = 64


class Load:
    """Messages ``load-<n>`` posted by a user, and the counts the recording plugin keeps."""

    def __init__(self, stack: Stack, tmp_path: pathlib.Path, *, shards: int = 1) -> None:
        self.stack = stack
        self.tmp_path = tmp_path
        self.discord = stack.discord
        self.channels = []
        for shard in range(shards):
            guild = self.discord.add_guild(f"g{shard}", shard=(shard, shards))
            self.channels.append(int(self.discord.channels_of(int(guild["id"]))[0]["id"]))
        self.user = self.discord.add_user("loader")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.gateways: list[subprocess.Popen[bytes]] = []
        self.sent = 0

    @property
    def key(self) -> str:
        return f"{self.stack.keys.prefix}:fault-handled"

    def spawn_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            **self.stack.env(
                WORKER_PLUGINS="tests.faults.plugin_record",
                RECORD_REDIS_URL=self.stack.redis_url,
                **extra,
            ),
        }
        log = (self.tmp_path / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        self.processes.append(process)
        return process

    def spawn_gateway(self, **extra: str) -> subprocess.Popen[bytes]:
        """A ``python -m gateway`` process of this stack, logging to its own file."""
        log = (self.tmp_path / f"gateway-{len(self.gateways)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env={**os.environ, **self.stack.env(**extra)},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        self.gateways.append(process)
        return process

    async def workers_ready(self, count: int) -> None:
        """Every spawned replica heartbeats (so it has bound its queue)."""
        deadline = time.monotonic() + 30
        while await self.stack.redis.zcard(self.stack.keys.workers()) < count:
            assert time.monotonic() < deadline, "workers did not start"
            await asyncio.sleep(0.1)

    async def send(self, count: int, rate: float) -> None:
        for _ in range(count):
            channel = self.channels[self.sent % len(self.channels)]
            self.discord.send_message(channel, self.user, f"load-{self.sent}")
            self.sent += 1
            await asyncio.sleep(1 / rate)

    async def counts(self) -> dict[str, int]:
        raw = await self.stack.redis.hgetall(self.key)
        return {k.decode(): int(v) for k, v in raw.items()}

    async def all_handled(self, timeout: float) -> float:
        """Wait until every message sent was handled; returns when that happened."""
        deadline = time.monotonic() + timeout
        while len(await self.counts()) < self.sent:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        return time.monotonic()

    async def row(self, scenario: str, recovery: float, bound: float, promise: str) -> Row:
        counts = await self.counts()
        return Row(
            scenario=scenario,
            sent=self.sent,
            handled=len(counts),
            lost=self.sent - len(counts),
            duplicates=sum(n - 1 for n in counts.values()),
            recovery=recovery,
            bound=bound,
            promise=promise,
        )

    async def stop_gateways(self) -> None:
        await _stop(self.gateways)

    async def stop_all(self) -> None:
        await _stop(self.gateways + self.processes)


async def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    loop = asyncio.get_running_loop()
    for process in processes:
        if process.poll() is None:
            process.terminate()
        await loop.run_in_executor(None, process.wait, 40)


@pytest.fixture
async def load(stack: Stack, tmp_path: pathlib.Path) -> typing.AsyncIterator[Load]:
    made = Load(stack, tmp_path)
    yield made
    await made.stop_all()


async def _gateway_listens(gateway: typing.Any) -> None:
    deadline = time.monotonic() + 15
    while "MESSAGE_CREATE" not in (gateway.publisher.interests or ()):
        assert time.monotonic() < deadline, "the gateway never saw the workers' interests"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("how", "promise"),
    [(signal.SIGKILL, "at least once"), (signal.SIGTERM, "exactly once")],
    ids=["kill-9", "sigterm"],
)
async def test_a_worker_dies_under_load(
    load: Load,
    stack: Stack,
    how: signal.Signals,
    promise: str,
    fault_report: typing.Callable[[Row], None],
) -> None:
    doomed = load.spawn_worker(RECORD_DELAY="0.02")
    load.spawn_worker(RECORD_DELAY="0.02")
    await load.workers_ready(2)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await load.discord.wait_for(lambda: load.discord.connected_shards() == [0])
        await _gateway_listens(gateway)
        sending = asyncio.get_running_loop().create_task(load.send(600, rate=200))
        await asyncio.sleep(1.0)
        doomed.send_signal(how)
        killed_at = time.monotonic()
        await sending
        done_at = await load.all_handled(timeout=60)
    row = await load.row(f"worker {'kill -9' if how == signal.SIGKILL else 'SIGTERM'}",
                         done_at - killed_at, 30, promise)  # fmt: skip
    fault_report(row)
    assert row.lost == 0
    if how == signal.SIGTERM:
        assert row.duplicates == 0  # drained: nothing in flight was abandoned
    else:
        assert row.duplicates <= IN_FLIGHT  # only what the dead replica held is run again
    assert row.recovery < row.bound


@pytest.mark.parametrize(
    ("how", "promise"),
    [(signal.SIGKILL, "exactly once"), (signal.SIGTERM, "exactly once")],
    ids=["kill-9", "sigterm"],
)
async def test_a_gateway_dies_under_load(
    load: Load,
    how: signal.Signals,
    promise: str,
    fault_report: typing.Callable[[Row], None],
) -> None:
    load.spawn_worker()
    await load.workers_ready(1)
    layout = {"SHARD_COUNT": "1", "LEASE_TTL": "3"}
    try:
        doomed = load.spawn_gateway(**layout)
        await load.discord.wait_for(lambda: load.discord.connected_shards() == [0], timeout=30)
        await asyncio.sleep(2.5)  # it has read the worker group's interests
        sending = asyncio.get_running_loop().create_task(load.send(500, rate=100))
        await asyncio.sleep(1.5)
        doomed.send_signal(how)
        stopped_at = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, doomed.wait, 30)
        load.spawn_gateway(**layout)  # the successor: takes the shard when the lease frees it
        await sending
        done_at = await load.all_handled(timeout=60)
    finally:
        await load.stop_gateways()
    records = load.discord.records
    row = await load.row(
        f"gateway {'kill -9' if how == signal.SIGKILL else 'SIGTERM'} (lease 3 s)",
        done_at - stopped_at, 30, promise,
    )  # fmt: skip
    fault_report(row)
    assert row.lost == 0
    assert row.duplicates == 0  # replays after the RESUME are deduplicated by the workers
    assert [r.accepted for r in records.resumes] == [True]
    assert len([i for i in records.identifies if i.accepted]) == 1  # never identified again
    assert row.recovery < row.bound


async def test_a_rolling_update_of_every_process_under_load(
    load: Load, stack: Stack, fault_report: typing.Callable[[Row], None]
) -> None:
    """What ``docker service update`` does to a running pool, all at once: the gateway
    replaced stop-first (SIGTERM, then its successor resumes), each worker replaced
    start-first (the new replica up, then the old one SIGTERMed), while events flow."""
    loop = asyncio.get_running_loop()
    old_workers = [load.spawn_worker(RECORD_DELAY="0.01") for _ in range(2)]
    await load.workers_ready(2)
    layout = {"SHARD_COUNT": "1", "LEASE_TTL": "3"}

    async def replace_worker(old: subprocess.Popen[bytes]) -> None:
        live = await stack.redis.zcard(stack.keys.workers())
        load.spawn_worker(RECORD_DELAY="0.01")
        await load.workers_ready(live + 1)  # start-first: the new replica consumes first
        old.send_signal(signal.SIGTERM)
        await loop.run_in_executor(None, old.wait, 30)

    try:
        first = load.spawn_gateway(**layout)
        await load.discord.wait_for(lambda: load.discord.connected_shards() == [0], timeout=30)
        await asyncio.sleep(2.5)  # it has read the worker group's interests
        sending = loop.create_task(load.send(800, rate=100))
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await replace_worker(old_workers[0])
        first.send_signal(signal.SIGTERM)  # stop-first: one gateway at a time
        await loop.run_in_executor(None, first.wait, 30)
        load.spawn_gateway(**layout)
        await replace_worker(old_workers[1])
        await load.discord.wait_for(
            lambda: load.discord.connected_shards() == [0], timeout=30, what="resumed"
        )
        updated = time.monotonic()
        await sending
        done_at = await load.all_handled(timeout=60)
    finally:
        await load.stop_gateways()
    records = load.discord.records
    row = await load.row("rolling update: gateway + 2 workers", done_at - started, 30,
                         "exactly once")  # fmt: skip
    fault_report(row)
    assert row.lost == 0
    assert row.duplicates == 0  # drained workers, a handed-over session, replays deduplicated
    assert [r.accepted for r in records.resumes] == [True]
    assert len([i for i in records.identifies if i.accepted]) == 1  # the deploy cost no IDENTIFY
    assert updated - started < row.bound
    assert row.recovery < row.bound


async def test_a_reconnect_and_invalid_session_storm(
    stack: Stack, tmp_path: pathlib.Path, fault_report: typing.Callable[[Row], None]
) -> None:
    load = Load(stack, tmp_path, shards=2)
    try:
        load.spawn_worker()
        await load.workers_ready(1)
        async with stack.gateway(SHARD_COUNT="2", SHARD_IDS="0-1") as gateway:
            discord = load.discord
            await discord.wait_for(lambda: discord.connected_shards() == [0, 1])
            await _gateway_listens(gateway)
            sending = asyncio.get_running_loop().create_task(load.send(400, rate=150))
            for round_ in range(10):
                await asyncio.sleep(0.5)
                # Every round forces at least one shard, however late a loaded machine resumes.
                await discord.wait_for(discord.connected_shards, timeout=30, what="a shard back")
                for shard in discord.connected_shards():  # one still reconnecting is left be
                    if round_ in (3, 7):
                        discord.force_invalid_session(shard, resumable=True)
                    else:
                        discord.force_reconnect(shard)
            storm_over = time.monotonic()
            await sending
            await discord.wait_for(lambda: discord.connected_shards() == [0, 1], timeout=30)
            done_at = await load.all_handled(timeout=60)
            assert gateway.group is not None
            resumes = sum(s.resumes for s in gateway.group.stats.values())
            identifies = sum(s.identifies for s in gateway.group.stats.values())
        row = await load.row("RECONNECT/INVALID_SESSION storm", done_at - storm_over, 30,
                             "exactly once")  # fmt: skip
        fault_report(row)
        assert resumes >= 1
        assert identifies == 2  # each shard identified once; every storm reconnect resumed
        assert row.lost == 0
        assert row.duplicates == 0  # replays after each RESUME were deduplicated
        assert row.recovery < row.bound
    finally:
        await load.stop_all()


async def test_the_platforms_redis_restarts_under_load(
    stack: Stack, tmp_path: pathlib.Path, fault_report: typing.Callable[[Row], None]
) -> None:
    private = servers.PrivateRedis(tmp_path)
    private.start()
    platform_redis = aioredis.Redis.from_url(private.url)
    faulty = dataclasses.replace(stack, redis_url=private.url, redis=platform_redis)
    load = Load(faulty, tmp_path)
    load.stack = stack  # counts live in the suite's own Redis, which stays up
    try:
        env_redis = {"REDIS_URL": private.url}
        load.spawn_worker(**env_redis)
        deadline = time.monotonic() + 30
        while await platform_redis.zcard(faulty.keys.workers()) < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        async with faulty.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await load.discord.wait_for(lambda: load.discord.connected_shards() == [0])
            await _gateway_listens(gateway)
            sending = asyncio.get_running_loop().create_task(load.send(400, rate=150))
            await asyncio.sleep(0.8)
            private.stop()
            await asyncio.sleep(2.0)
            private.start()
            restarted = time.monotonic()
            await sending
            done_at = await load.all_handled(timeout=60)
        row = await load.row("platform Redis restart", done_at - restarted, 30, "none lost")
        fault_report(row)
        assert row.lost == 0
        assert row.recovery < row.bound
    finally:
        await load.stop_all()
        await platform_redis.aclose()
        private.stop()


async def test_rabbitmq_is_killed_and_restarted_under_load(
    stack: Stack, tmp_path: pathlib.Path, fault_report: typing.Callable[[Row], None]
) -> None:
    broker = servers.PrivateRabbitMQ(tmp_path / "rabbit")
    broker.directory.mkdir()
    broker.start()
    faulty = dataclasses.replace(stack, amqp_url=broker.url)
    load = Load(faulty, tmp_path)
    try:
        load.spawn_worker()
        await load.workers_ready(1)
        async with faulty.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await load.discord.wait_for(lambda: load.discord.connected_shards() == [0])
            await _gateway_listens(gateway)
            sending = asyncio.get_running_loop().create_task(load.send(400, rate=100))
            await asyncio.sleep(1.5)
            broker.stop()  # SIGKILL: what a crash or a lost node looks like
            await asyncio.sleep(1.0)
            broker.start()
            restarted = time.monotonic()
            await sending
            done_at = await load.all_handled(timeout=90)
        row = await load.row("RabbitMQ killed and restarted", done_at - restarted, 60,
                             "exactly once")  # fmt: skip
        fault_report(row)
        assert row.lost == 0
        # Messages delivered but not acked when the broker died come back marked redelivered
        # while their first handling may still run; the copy waits for it (the worker's
        # holder key is alive) instead of running it again.
        assert row.duplicates == 0
        assert row.recovery < row.bound
    finally:
        await load.stop_all()
        broker.shutdown()


async def test_mongodb_restarts_while_commands_flow(
    stack: Stack, tmp_path: pathlib.Path, fault_report: typing.Callable[[Row], None]
) -> None:
    mongod = servers.MongoServer(tmp_path / "mongod")
    mongod.directory.mkdir()
    mongod.start()
    faulty = dataclasses.replace(stack, mongo_url=mongod.url)
    load = Load(faulty, tmp_path)
    discord = load.discord
    guild_id = int(discord.world.channels[load.channels[0]]["guild_id"])
    channels = [int(discord.world.add_channel(guild_id, f"c{i}")["id"]) for i in range(20)]
    users = [discord.add_user(f"u{i}") for i in range(100)]
    bot_id = str(discord.world.bot_id)

    def answers() -> list[str]:
        return [
            m["content"]
            for channel in channels
            for m in discord.world.messages.get(channel, {}).values()
            if m["author"]["id"] == bot_id
        ]

    try:
        load.spawn_worker()
        await load.workers_ready(1)
        async with faulty.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            await _gateway_listens(gateway)
            for index, user in enumerate(users):
                if index == 20:
                    mongod.stop()  # settings reads fall back; nothing waits on MongoDB
                if index == 60:
                    mongod.start()
                    restarted = time.monotonic()
                discord.send_message(channels[index % 20], user, "!hi")
                await asyncio.sleep(0.02)
            await discord.wait_for(lambda: len(answers()) >= len(users), timeout=60)
            done_at = time.monotonic()
        said = answers()
        row = Row(
            scenario="MongoDB restarted while commands flow",
            sent=len(users),
            handled=len(set(said)),
            lost=len(users) - len(set(said)),
            duplicates=len(said) - len(set(said)),
            recovery=done_at - restarted,
            bound=30,
            promise="every command answered once",
        )
        fault_report(row)
        assert sorted(said) == sorted(f"hi {u['id']}" for u in users)
        assert row.recovery < row.bound
    finally:
        await load.stop_all()
        mongod.stop()


async def test_malformed_and_oversized_envelopes_go_to_the_dead_letter_queue(
    load: Load, stack: Stack, fault_report: typing.Callable[[Row], None]
) -> None:
    load.spawn_worker()
    await load.workers_ready(1)
    names = topology.Topology(stack.namespace)
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await load.discord.wait_for(lambda: load.discord.connected_shards() == [0])
        await _gateway_listens(gateway)
        channel = await stack.connection.channel()
        exchange = await channel.get_exchange(names.events_exchange)
        bad = [
            b"not json at all",
            orjson.dumps({"v": 99, "t": "MESSAGE_CREATE"}),
            orjson.dumps({"v": 1, "pool": "main", "t": "MESSAGE_CREATE"}),
            b"[" + b" " * envelope.MAX_MESSAGE_BYTES + b"]",  # refused unread
        ]
        sending = asyncio.get_running_loop().create_task(load.send(200, rate=200))
        for body in bad:
            await exchange.publish(
                aio_pika.Message(body), routing_key=names.event_key("main", "MESSAGE_CREATE")
            )
        started = time.monotonic()
        await sending
        done_at = await load.all_handled(timeout=30)
        dead = await channel.get_queue(names.dead_letter_queue)
        reasons: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = await dead.get(fail=False)
            if message is None:
                if len(reasons) >= len(bad):
                    break
                await asyncio.sleep(0.1)
                continue
            reasons.append(str((message.headers or {}).get(topology.HEADER_REASON, "")))
            await message.ack()
        await channel.close()
    row = await load.row(
        "malformed + oversized envelopes", done_at - started, 30, "parked, none lost"
    )
    fault_report(row)
    assert row.lost == 0
    assert row.duplicates == 0
    assert len(reasons) == len(bad)
    assert all(reasons)  # each with the reason it could not be read


async def test_one_user_flooding_commands_does_not_starve_another(
    load: Load, stack: Stack, fault_report: typing.Callable[[Row], None]
) -> None:
    load.spawn_worker()
    await load.workers_ready(1)
    discord = load.discord
    guild_id = int(discord.world.channels[load.channels[0]]["guild_id"])
    quiet_channel = int(discord.world.add_channel(guild_id, "quiet")["id"])
    other = discord.add_user("bystander")
    bot_id = str(discord.world.bot_id)

    def replies_in(channel_id: int) -> list[str]:
        return [
            m["content"]
            for m in discord.world.messages.get(channel_id, {}).values()
            if m["author"]["id"] == bot_id
        ]

    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        await _gateway_listens(gateway)
        for _ in range(150):
            discord.send_message(load.channels[0], load.user, "!hi")
        started = time.monotonic()
        discord.send_message(quiet_channel, other, "!hi")
        await discord.wait_for(lambda: replies_in(quiet_channel), timeout=30)
        answered = time.monotonic() - started
        await load.send(100, rate=200)
        done_at = await load.all_handled(timeout=30)
        flood_replies = replies_in(load.channels[0])
    # Bound: one window of Discord's per-channel message limit (5 per 5 s). The flood's own
    # replies wait on it in its channel, and a batch's handlers run in order, so a bystander
    # batched behind them can wait that long (measured here: about 5 s).
    row = await load.row("150 commands from one user", answered, 10, "others answered")
    fault_report(row)
    assert sum("hi " in r for r in flood_replies) == 5  # the cooldown held, exactly
    assert row.recovery < row.bound
    assert row.lost == 0
    del done_at
