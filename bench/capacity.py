"""Capacity inputs: what one gateway process, one worker replica, Redis and RabbitMQ cost per event.

    .venv/bin/python -m bench.capacity [--repeat 3] [--events 6000] [--rate 800] [--shards 8]

Starts its own Redis, RabbitMQ node and mongod (so that ``INFO commandstats``, the broker's
CPU and every counter hold this run's work and nothing of other programs on the machine), and
a Discord emulator process (``--shards`` shards, ``--guilds`` guilds per shard of ``--members``
members). Then, ``--repeat`` times:

* **gateway**: a real ``python -m gateway`` process holding every shard; for each dispatch type
  (MESSAGE_CREATE, GUILD_MEMBER_UPDATE, PRESENCE_UPDATE, GUILD_CREATE) the emulator sends
  ``--events`` (GUILD_CREATE: a tenth) at ``--rate`` per second spread over the shards; a
  consumer checks every envelope arrived. Per event: the gateway's CPU (``/proc``), Redis
  commands and server time (``INFO commandstats`` deltas, less the idle background measured
  in the same run), broker messages (the gateway's own ``/metrics``), the broker's and Redis'
  CPU.
* **worker**: gateway, RabbitMQ and one ``python -m worker`` replica whose listener reads the
  author's member from the cache for every MESSAGE_CREATE and answers one in
  ``--reply-every`` through REST (the shared limiter). Per event: the worker's CPU, the Redis
  commands it adds over the gateway's, its deliveries (``/metrics``).

and once:

* **memory**: the gateway's RSS with 1 shard and 1 guild, 1 shard and ``--memory-guilds``
  guilds, 8 shards and 8 guilds; Redis bytes per member and guild from ``bench.cache_memory``
  at two populations;
* **servers alone**: ``redis-benchmark`` (plain and pipelined) and a bare aio-pika publish
  (confirms) + consume (acks) through a quorum queue, each with the server's CPU per operation.

Prints Markdown tables (median and min to max over the repeats), and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import os
import pathlib
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import typing
import uuid

import aio_pika
import aiohttp
import hikari
import orjson
import redis.asyncio as aioredis

from shared import interests as shared_interests
from shared import keys, topology

if typing.TYPE_CHECKING:
    from worker import bot as bot_module

ROOT = pathlib.Path(__file__).resolve().parent.parent
Json = dict[str, typing.Any]
TYPES: typing.Final = ("MESSAGE_CREATE", "GUILD_MEMBER_UPDATE", "PRESENCE_UPDATE", "GUILD_CREATE")
#: The gateway identifies with the default intents plus GUILD_PRESENCES, so that the emulator
#: (Gateway "Gateway Intents": PRESENCE_UPDATE needs it) delivers presences at all.
INTENTS: typing.Final = "GUILDS,GUILD_MEMBERS,GUILD_MESSAGES,MESSAGE_CONTENT,GUILD_PRESENCES"
IDLE_SECONDS: typing.Final = 3.0
GROUP: typing.Final = "capacity"


# --- the emulator, in a process of its own -----------------------------------------------------


def _payloads(discord: typing.Any, kind: str, count: int) -> typing.Iterator[tuple[Json, int]]:
    """``count`` dispatches of ``kind``, round-robin over every guild (so over every shard)."""
    world = discord.world
    guild_ids = sorted(gid for gid in world.guilds)
    members = {
        gid: [m for m in world.members[gid].values() if not m["user"].get("bot")]
        for gid in guild_ids
    }
    for index in range(count):
        guild_id = guild_ids[index % len(guild_ids)]
        member = members[guild_id][(index // len(guild_ids)) % len(members[guild_id])]
        user = member["user"]
        if kind == "MESSAGE_CREATE":
            channel_id = int(world.guild_channels(guild_id)[0]["id"])
            # Gateway Events "Message Create": a guild message carries ``member`` (no ``user``).
            message = world.make_message(channel_id, user, f"{index} " + "x" * 120, member=member)
            world.messages[channel_id].pop(int(message["id"]), None)  # keep the emulator small
            yield message, guild_id
        elif kind == "GUILD_MEMBER_UPDATE":
            # Gateway Events "Guild Member Update": guild_id, roles, user, nick, ... (a nick change).
            yield {**member, "guild_id": str(guild_id), "nick": f"n{index}"}, guild_id
        elif kind == "PRESENCE_UPDATE":
            # Gateway Events "Presence Update": user (only ``id`` required), guild_id, status,
            # activities, client_status.
            status = ("online", "idle", "dnd")[index % 3]
            yield {
                "user": {"id": user["id"]}, "guild_id": str(guild_id), "status": status,
                "activities": [{"name": "a game", "type": 0, "created_at": 1}],
                "client_status": {"desktop": status},
            }, guild_id  # fmt: skip
        else:
            # Gateway Events "Guild Create", as the emulator builds it for a bot with
            # GUILD_PRESENCES in a guild under large_threshold: every member listed.
            yield world.guild_create_payload(guild_id, presences=True), guild_id


async def _send(discord: typing.Any, kind: str, count: int, rate: float) -> float:
    """Dispatch at ``rate`` per second; a late tick sends what is due at once."""
    started = time.perf_counter()
    for index, (payload, guild_id) in enumerate(_payloads(discord, kind, count)):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        discord.gateway.dispatch(kind, payload, guild_id=guild_id)
    return time.perf_counter() - started


async def serve_emulator(shards: int, guilds: int, members: int) -> None:
    """``ready API TOKEN``; then ``wait-shards N``, ``send KIND COUNT RATE``, ``quit``."""
    from playground.discord import emulator, gateway  # noqa: PLC0415 - the emulator process only

    options = gateway.GatewayOptions(max_concurrency=16, recommended_shards=shards)
    async with emulator.DiscordEmulator(gateway_options=options) as discord:
        for shard in range(shards):
            for g in range(guilds):
                guild = discord.add_guild(f"g{shard}-{g}", shard=(shard, shards))
                for m in range(members):
                    discord.world.add_member(
                        int(guild["id"]), discord.add_user(f"u{shard}-{g}-{m}")
                    )
        print(f"ready {discord.api_url} {discord.token}", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                return
            if line[0] == "wait-shards":
                wanted = int(line[1])
                await discord.wait_for(functools.partial(_connected, discord, wanted), timeout=120)
                print("connected", flush=True)
            elif line[0] == "send":
                seconds = await _send(discord, line[1], int(line[2]), float(line[3]))
                print(f"sent {seconds:.3f}", flush=True)


def _connected(discord: typing.Any, wanted: int) -> bool:
    return len(discord.connected_shards()) >= wanted


class Emulator:
    def __init__(self, process: asyncio.subprocess.Process, api_url: str, token: str) -> None:
        self.process = process
        self.api_url = api_url
        self.token = token

    @classmethod
    async def start(cls, shards: int, guilds: int, members: int) -> Emulator:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-O", "-m", "bench.capacity", "--serve-emulator",
            str(shards), str(guilds), str(members),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert process.stdout is not None
        _, api_url, token = (await process.stdout.readline()).decode().split()
        return cls(process, api_url, token)

    async def command(self, line: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        return (await asyncio.wait_for(self.process.stdout.readline(), timeout=900)).decode()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.command("quit")
        await self.process.wait()


# --- the worker's listener: ``WORKER_PLUGINS=bench.capacity`` ----------------------------------


def setup(bot: bot_module.Bot) -> None:
    """A typical listener: the author's member from the cache; a REST answer on a fraction."""
    every = int(os.environ.get("CAPACITY_REPLY_EVERY", "0"))
    handled = 0

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        nonlocal handled
        handled += 1
        assert bot.cache is not None
        await bot.cache.get_member(event.guild_id, event.author_id)
        if every and handled % every == 0:
            await bot.rest.create_message(event.channel_id, "ok")


# --- measuring from outside ---------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def commandstats(info: typing.Mapping[str, typing.Any]) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as {command: (calls, usec)}."""
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in info.items()
        if name.startswith("cmdstat_")
    }


def stats_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls - c0:
            out[name] = (calls - c0, usec - u0)
    return out


def prometheus(text: str, name: str) -> float:
    """The sum of every sample of metric ``name`` in Prometheus' text format."""
    total = 0.0
    for line in text.splitlines():
        for full in (name, f"{name}_total"):  # counters are exposed with ``_total``
            if line.startswith(full) and line[len(full) : len(full) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
    return total


@dataclasses.dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    redis: dict[str, tuple[int, int]]
    metrics: dict[str, float]


@dataclasses.dataclass
class Servers:
    redis_url: str
    amqp_url: str
    mongo_url: str
    redis_pid: int
    beam_pid: int


class Run:
    """Processes under measurement and how to read them."""

    def __init__(self, servers: Servers, redis: aioredis.Redis) -> None:
        self.servers = servers
        self.redis = redis
        self.pids: dict[str, int] = {"redis": servers.redis_pid, "rabbitmq": servers.beam_pid}
        self.health: dict[str, int] = {}

    async def snapshot(self, session: aiohttp.ClientSession) -> Snapshot:
        metrics: dict[str, float] = {}
        for name, port in self.health.items():
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            for metric in (
                "shardline_gateway_published_events", "shardline_gateway_published_messages",
                "shardline_worker_messages_consumed", "shardline_worker_events_handled",
                "shardline_gateway_cache_failures",
            ):  # fmt: skip
                if metric.startswith(f"shardline_{name}"):
                    metrics[metric] = prometheus(text, metric)
        return Snapshot(
            time.perf_counter(),
            {name: proc_cpu(pid) for name, pid in self.pids.items()},
            commandstats(await self.redis.info("commandstats")),
            metrics,
        )


@dataclasses.dataclass
class Cost:
    """One measured interval, background removed, per event."""

    events: int
    seconds: float
    cpu: dict[str, float]
    redis_calls: dict[str, float]
    redis_usec: float
    metrics: dict[str, float]

    @property
    def redis_total(self) -> float:
        return sum(self.redis_calls.values())


def cost(
    before: Snapshot, after: Snapshot, events: int, idle: tuple[Snapshot, Snapshot] | None
) -> Cost:
    seconds = after.at - before.at
    redis = stats_delta(before.redis, after.redis)
    cpu = {k: after.cpu[k] - before.cpu[k] for k in after.cpu}
    if idle is not None:
        scale = seconds / (idle[1].at - idle[0].at)
        for name, (calls, usec) in stats_delta(idle[0].redis, idle[1].redis).items():
            c, u = redis.get(name, (0, 0))
            redis[name] = (int(c - calls * scale), int(u - usec * scale))
        for k in cpu:
            cpu[k] -= (idle[1].cpu[k] - idle[0].cpu[k]) * scale
    redis.pop("info", None)  # this bench's own reads
    return Cost(
        events, seconds,
        {k: v / events for k, v in cpu.items()},
        {k: c / events for k, (c, _) in redis.items() if c > 0},
        sum(max(u, 0) for _, u in redis.values()) / events,
        {k: (after.metrics.get(k, 0.0) - before.metrics.get(k, 0.0)) / events for k in after.metrics},
    )  # fmt: skip


# --- servers ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def private_servers(directory: pathlib.Path) -> typing.AsyncIterator[Servers]:
    from tests import servers  # noqa: PLC0415 - the test suite's private-server helpers

    (directory / "redis").mkdir()
    (directory / "rabbit").mkdir()
    (directory / "mongo").mkdir()
    redis = servers.PrivateRedis(directory / "redis")
    rabbit = servers.PrivateRabbitMQ(directory / "rabbit")
    mongo = servers.MongoServer(directory / "mongo")
    try:
        redis.start()
        rabbit.start()
        mongo.start()
        await asyncio.sleep(2.0)  # the broker's pid file follows its port
        yield Servers(
            redis.url, rabbit.url, mongo.url,
            int((directory / "redis" / "redis.pid").read_text().strip()),
            int(rabbit.pidfile.read_text().strip()),
        )  # fmt: skip
    finally:
        mongo.stop()
        rabbit.shutdown()
        stop_epmd(rabbit.epmd_port)
        redis.stop()


def stop_epmd(port: int) -> None:
    """Stop the private epmd the broker started: found by the port in its environment (its
    command line is only ``epmd -daemon``, so a match on the command line finds nothing)."""
    wanted = f"ERL_EPMD_PORT={port}".encode()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if b"epmd" in (entry / "cmdline").read_bytes().split(b"\0")[0] and wanted in (
                entry / "environ"
            ).read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGTERM)


def free_port() -> int:
    from tests import servers  # noqa: PLC0415

    return servers.free_port()


async def start_gateway(
    servers: Servers, emulator: Emulator, namespace: str, shards: int
) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {
        **os.environ, "DISCORD_TOKEN": emulator.token, "DISCORD_API_URL": emulator.api_url,
        "AMQP_URL": servers.amqp_url, "REDIS_URL": servers.redis_url, "NAMESPACE": namespace,
        "SHARD_COUNT": str(shards), "SHARD_IDS": f"0-{shards - 1}" if shards > 1 else "0",
        "HEALTH_PORT": str(port), "LOG_LEVEL": "WARNING", "INTENTS": INTENTS,
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-O", "-m", "gateway", env=env, cwd=ROOT
    )
    await emulator.command(f"wait-shards {shards}")
    return process, port


async def start_worker(
    servers: Servers, emulator: Emulator, namespace: str, reply_every: int
) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {
        **os.environ, "DISCORD_TOKEN": emulator.token, "DISCORD_API_URL": emulator.api_url,
        "AMQP_URL": servers.amqp_url, "REDIS_URL": servers.redis_url, "NAMESPACE": namespace,
        "MONGO_URL": servers.mongo_url, "HEALTH_PORT": str(port), "LOG_LEVEL": "WARNING",
        "WORKER_PLUGINS": "bench.capacity", "WORKER_ROLES": "events", "INTENTS": INTENTS,
        "CAPACITY_REPLY_EVERY": str(reply_every),
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-O", "-m", "worker", env=env, cwd=ROOT
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    if response.status == 200:
                        break
            await asyncio.sleep(0.1)
    return process, port


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def wait_metric(
    run: Run, session: aiohttp.ClientSession, metric: str, target: float, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        snap = await run.snapshot(session)
        if snap.metrics.get(metric, 0.0) >= target:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{metric} stuck at {snap.metrics.get(metric)} (wanted {target})")
        await asyncio.sleep(0.25)


# --- the phases --------------------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.events = 0

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        self.events += len(body) if isinstance(body, list) else 1


async def gateway_phase(
    servers: Servers, args: argparse.Namespace
) -> tuple[dict[str, Cost], float]:
    """Per dispatch type: the gateway's cost per event. Also its RSS at the end (MB)."""
    namespace = f"cap{uuid.uuid4().hex[:8]}"
    names = topology.Topology(namespace)
    redis = aioredis.Redis.from_url(servers.redis_url)
    await shared_interests.announce(
        redis, keys.RedisKeys(namespace, "main"), GROUP, list(TYPES), replace=True
    )
    connection = await aio_pika.connect_robust(servers.amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=2000)
    queue, _ = await names.declare_worker_queues(channel, "main", GROUP, list(TYPES))
    counter = Counter()
    await queue.consume(counter.on_message, no_ack=True)
    emulator = await Emulator.start(args.shards, args.guilds, args.members)
    run = Run(servers, redis)
    results: dict[str, Cost] = {}
    gateway, port = await start_gateway(servers, emulator, namespace, args.shards)
    try:
        run.pids["gateway"] = gateway.pid
        run.health["gateway"] = port
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(3.0)  # the GUILD_CREATE burst, the first checkpoint
            idle0 = await run.snapshot(session)
            await asyncio.sleep(IDLE_SECONDS)
            idle = (idle0, await run.snapshot(session))
            for kind in TYPES:
                count = args.events // 10 if kind == "GUILD_CREATE" else args.events
                rate = args.rate / 10 if kind == "GUILD_CREATE" else args.rate
                target = counter.events + count
                published = (await run.snapshot(session)).metrics.get(
                    "shardline_gateway_published_events", 0.0
                )
                before = await run.snapshot(session)
                print(f"   gateway {kind}", file=sys.stderr, flush=True)
                await emulator.command(f"send {kind} {count} {rate}")
                await wait_metric(
                    run, session, "shardline_gateway_published_events", published + count
                )
                after = await run.snapshot(session)
                for _ in range(200):
                    if counter.events >= target:
                        break
                    await asyncio.sleep(0.05)
                if counter.events < target:
                    raise SystemExit(f"{kind}: {target - counter.events} events never arrived")
                results[kind] = cost(before, after, count, idle)
                await asyncio.sleep(0.5)
            rss = proc_rss_mb(gateway.pid)
    finally:
        await stop(gateway)
        await emulator.close()
        await connection.close()
        await cleanup(servers, namespace, [GROUP])
        await redis.aclose()
    return results, rss


async def worker_phase(servers: Servers, args: argparse.Namespace) -> tuple[Cost, float]:
    """Gateway + one worker replica: per MESSAGE_CREATE, everything (the gateway's share is
    known from the gateway phase). Also the worker's RSS (MB)."""
    namespace = f"cap{uuid.uuid4().hex[:8]}"
    redis = aioredis.Redis.from_url(servers.redis_url)
    emulator = await Emulator.start(args.shards, args.guilds, args.members)
    run = Run(servers, redis)
    worker, wport = await start_worker(servers, emulator, namespace, args.reply_every)
    gateway, gport = await start_gateway(servers, emulator, namespace, args.shards)
    try:
        run.pids |= {"gateway": gateway.pid, "worker": worker.pid}
        run.health |= {"gateway": gport, "worker": wport}
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(3.0)
            idle0 = await run.snapshot(session)
            await asyncio.sleep(IDLE_SECONDS)
            idle = (idle0, await run.snapshot(session))
            before = await run.snapshot(session)
            handled = before.metrics["shardline_worker_events_handled"]
            await emulator.command(f"send MESSAGE_CREATE {args.events} {args.rate}")
            await wait_metric(
                run, session, "shardline_worker_events_handled", handled + args.events
            )
            after = await run.snapshot(session)
            rss = proc_rss_mb(worker.pid)
    finally:
        await stop(gateway)
        await stop(worker)
        await emulator.close()
        await cleanup(servers, namespace, ["default"])
        await redis.aclose()
    return cost(before, after, args.events, idle), rss


async def cleanup(servers: Servers, namespace: str, groups: list[str]) -> None:
    from bench import cleanup as bench_cleanup  # noqa: PLC0415

    await bench_cleanup.cleanup(servers.amqp_url, servers.redis_url, namespace, groups)


async def gateway_memory(servers: Servers, args: argparse.Namespace) -> list[tuple[str, float]]:
    """The gateway's RSS after start-up, for a few shard and guild counts."""
    rows = []
    for shards, guilds in ((1, 1), (1, args.memory_guilds), (8, 1)):
        namespace = f"cap{uuid.uuid4().hex[:8]}"
        emulator = await Emulator.start(shards, guilds, args.members)
        gateway, _ = await start_gateway(servers, emulator, namespace, shards)
        try:
            await asyncio.sleep(5.0)
            rss = proc_rss_mb(gateway.pid)
        finally:
            await stop(gateway)
            await emulator.close()
            await cleanup(servers, namespace, [])
        rows.append(
            (f"{shards} shard(s), {shards * guilds} guild(s) of {args.members} members", rss)
        )
    return rows


async def redis_memory(servers: Servers, scales: list[tuple[int, int]]) -> list[str]:
    """``bench.cache_memory``'s first table at each (guilds, members) scale."""
    out = []
    for guilds, members in scales:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-O", "-m", "bench.cache_memory", "--guilds", str(guilds),
            "--members", str(members), "--samples", "200",
            env={**os.environ, "REDIS_URL": servers.redis_url},
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        output, _ = await process.communicate()
        text = output.decode()
        member = re.search(r"\| per member, with its user \| (\d+) \|", text)
        guild = re.search(r"\| per guild \(own fields, roles, emojis\) \| (\d+) \|", text)
        channel = re.search(r"\| per channel \| (\d+) \|", text)
        out.append(
            f"| {guilds:,} guilds x {members:,} members | "
            f"{member.group(1) if member else '?'} | {guild.group(1) if guild else '?'} | "
            f"{channel.group(1) if channel else '?'} |"
        )
    return out


def redis_benchmark(servers: Servers) -> list[str]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return ["| redis-benchmark not installed | | | |"]
    port = servers.redis_url.rsplit(":", 1)[1].split("/")[0]
    rows = []
    for pipeline in (1, 16):
        cpu0 = proc_cpu(servers.redis_pid)
        started = time.perf_counter()
        result = subprocess.run(
            [binary, "-h", "127.0.0.1", "-p", port, "-n", "200000", "-c", "50", "-P",
             str(pipeline), "-t", "set,get,hset,sadd", "--csv"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        cpu = proc_cpu(servers.redis_pid) - cpu0
        rates = {
            line.split(",")[0].strip('"'): float(line.split(",")[1].strip('"'))
            for line in result.stdout.splitlines()
            if line and not line.startswith('"test"')
        }
        ops = 200_000 * len(rates)
        rows.append(
            f"| pipeline {pipeline} | "
            + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items())
            + f" | {ops / cpu:,.0f} | {cpu / seconds:.2f} |"
        )
    return rows


async def broker_alone(servers: Servers, messages: int, size: int) -> str:
    """Bare aio-pika: a publisher process (confirms, 200 in flight) and a consumer here (acks)."""
    namespace = f"cap{uuid.uuid4().hex[:8]}"
    names = topology.Topology(namespace)
    connection = await aio_pika.connect_robust(servers.amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=200)
    queue, _ = await names.declare_worker_queues(channel, "main", GROUP, ["MESSAGE_CREATE"])
    seen = 0
    done = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        await message.ack()
        seen += 1
        if seen == messages:
            done.set()

    await queue.consume(on_message)
    cpu0 = proc_cpu(servers.beam_pid)
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-O", "-m", "bench.reference_publisher", servers.amqp_url,
        names.events_exchange, names.event_key("main", "MESSAGE_CREATE"), str(messages),
        str(size), "200", stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    await process.communicate()
    await asyncio.wait_for(done.wait(), timeout=600)
    seconds = time.perf_counter() - started
    cpu = proc_cpu(servers.beam_pid) - cpu0
    await connection.close()
    await cleanup(servers, namespace, [GROUP])
    return (
        f"| {messages:,} messages of {size:,} B, quorum queue | {messages / seconds:,.0f} | "
        f"{cpu / messages * 1e6:.0f} | {messages / cpu:,.0f} |"
    )


# --- the report --------------------------------------------------------------------------------


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))} to {fmt.format(max(values))})"
    )


def _median_calls(costs: list[Cost]) -> dict[str, float]:
    """Median calls per event of each command over the runs (a run without it counts 0)."""
    names = {name for c in costs for name in c.redis_calls}
    return {
        name: statistics.median([c.redis_calls.get(name, 0.0) for c in costs]) for name in names
    }


def _named(calls: dict[str, float]) -> str:
    kept = sorted(((v, k) for k, v in calls.items() if v >= 0.01), reverse=True)  # noise below
    return ", ".join(f"{name} {value:.2f}" for value, name in kept) or "none"


def gateway_report(runs: list[dict[str, Cost]]) -> list[str]:
    lines = [
        (
            "| dispatch | gateway CPU ms/event | events/s per gateway core | Redis commands/event: "
            "by command (median) | commandstats µs/event | broker messages/event | "
            "RabbitMQ CPU µs/event | redis-server CPU µs/event |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in TYPES:
        costs = [r[kind] for r in runs]
        cpu = [c.cpu["gateway"] * 1000 for c in costs]
        total = spread([c.redis_total for c in costs], "{:.2f}")
        messages = spread([c.metrics.get("shardline_gateway_published_messages", 0) for c in costs])
        lines.append(
            f"| {kind} | {spread(cpu)} | {spread([1000 / x for x in cpu if x > 0], '{:,.0f}')} | "
            f"{total}: {_named(_median_calls(costs))} | "
            f"{spread([c.redis_usec for c in costs], '{:.1f}')} | {messages} | "
            f"{spread([c.cpu['rabbitmq'] * 1e6 for c in costs], '{:.0f}')} | "
            f"{spread([c.cpu['redis'] * 1e6 for c in costs], '{:.0f}')} |"
        )
    lost = sum(
        c.metrics.get("shardline_gateway_cache_failures", 0.0) * c.events
        for r in runs
        for c in r.values()
    )
    lines += [
        "",
        (
            "Commands run by a Lua script are counted twice in commandstats' µs (in EVALSHA and "
            "alone) and once each in the calls. Cache writes the gateway gave up on (its 0.5 s Redis "
            f"deadline) during these runs: {lost:.0f}."
        ),
    ]
    return lines


def worker_report(gateway_runs: list[dict[str, Cost]], runs: list[Cost]) -> list[str]:
    """The worker's share: everything measured minus the gateway phase's MESSAGE_CREATE."""
    gateway_side = [r["MESSAGE_CREATE"] for r in gateway_runs]
    gw_calls = _median_calls(gateway_side)
    gw_total = sum(gw_calls.values())
    gw_usec = statistics.median([c.redis_usec for c in gateway_side])
    all_calls = _median_calls(runs)
    added = {k: all_calls.get(k, 0.0) - gw_calls.get(k, 0.0) for k in all_calls}
    cpu = [c.cpu["worker"] * 1000 for c in runs]
    published = spread([c.metrics.get("shardline_gateway_published_messages", 0) for c in runs])
    consumed = spread([c.metrics.get("shardline_worker_messages_consumed", 0) for c in runs])
    return [
        "| per MESSAGE_CREATE | worker | gateway (same run) | RabbitMQ | redis-server |",
        "|---|---|---|---|---|",
        (
            f"| CPU ms/event | {spread(cpu)} | {spread([c.cpu['gateway'] * 1000 for c in runs])} | "
            f"{spread([c.cpu['rabbitmq'] * 1000 for c in runs])} | "
            f"{spread([c.cpu['redis'] * 1000 for c in runs])} |"
        ),
        f"| events/s per core | {spread([1000 / x for x in cpu if x > 0], '{:,.0f}')} | | | |",
        "",
        (
            f"Redis commands per event added by the worker (all, minus the gateway's {gw_total:.2f} "
            f"of the gateway phase): {spread([c.redis_total - gw_total for c in runs], '{:.2f}')}: "
            f"{_named(added)}. Commandstats µs/event added by the worker: "
            f"{spread([c.redis_usec - gw_usec for c in runs], '{:.1f}')}."
        ),
        (
            f"Broker messages per event: published {published}, delivered to the worker "
            f"{consumed} (each delivery acked once)."
        ),
    ]


def machine() -> str:
    cpus = os.cpu_count()
    kib = int(pathlib.Path("/proc/meminfo").read_text().split()[1])
    model = ""
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return (
        f"{platform.platform()}, Python {platform.python_version()}, {cpus} cores ({model}), "
        f"{kib / 1024 / 1024:.0f} GB; load average at start {load[0]:.1f}"
    )


def report(
    args: argparse.Namespace,
    gateway_runs: list[dict[str, Cost]],
    worker_runs: list[Cost],
    rss: list[float],
    worker_rss: float,
) -> None:
    print()
    print(
        f"## Gateway: one process, {args.shards} shards, {args.shards * args.guilds} "
        f"guilds of {args.members} members, {args.rate:g} events/s spread over the shards "
        f"(GUILD_CREATE: a tenth of the count and rate); {args.events:,} events per type; "
        f"median (min to max) of {args.repeat}"
    )
    print()
    print("\n".join(gateway_report(gateway_runs)))
    print()
    print(f"Gateway RSS after the run: {spread(rss, '{:.0f}')} MB.")
    print()
    print(
        f"## Worker: one replica, {args.events:,} MESSAGE_CREATE at {args.rate:g}/s "
        f"through the gateway; cache read per event, REST answer on 1 in "
        f"{args.reply_every}; worker RSS {worker_rss:.0f} MB"
    )
    print()
    print("\n".join(worker_report(gateway_runs, worker_runs)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=800.0, help="events/s over all shards")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--guilds", type=int, default=10, help="guilds per shard")
    parser.add_argument("--members", type=int, default=40, help="members per guild")
    parser.add_argument("--reply-every", type=int, default=50)
    parser.add_argument("--memory-guilds", type=int, default=400)
    parser.add_argument(
        "--memory-scales", default="200x100,1000x200", help="guilds x members for Redis bytes"
    )
    parser.add_argument("--skip", default="", help="comma-separated: memory,servers")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    print(f"Machine: {machine()}.")
    print(f"Command: `python -m bench.capacity {' '.join(sys.argv[1:])}`.")
    with tempfile.TemporaryDirectory(prefix="capacity") as directory:
        async with private_servers(pathlib.Path(directory)) as servers:
            gateway_runs: list[dict[str, Cost]] = []
            worker_runs: list[Cost] = []
            rss: list[float] = []
            worker_rss = 0.0
            for index in range(args.repeat):
                print(f"== repeat {index + 1}/{args.repeat}", file=sys.stderr, flush=True)
                result, gateway_rss = await gateway_phase(servers, args)
                gateway_runs.append(result)
                rss.append(gateway_rss)
                worker_cost, worker_rss = await worker_phase(servers, args)
                worker_runs.append(worker_cost)
            if gateway_runs:
                report(args, gateway_runs, worker_runs, rss, worker_rss)
            if "memory" not in skip:
                print()
                print("## Memory")
                print()
                print("| gateway process | RSS MB |")
                print("|---|---|")
                for label, mb in await gateway_memory(servers, args):
                    print(f"| {label} | {mb:.1f} |")
                print()
                print(
                    "| Redis cache (bench.cache_memory) | bytes/member with user | bytes/guild | bytes/channel |"
                )
                print("|---|---|---|---|")
                scales = [
                    (int(a), int(b))
                    for a, b in (s.split("x") for s in args.memory_scales.split(",") if s)
                ]
                print("\n".join(await redis_memory(servers, scales)))
            if "servers" not in skip:
                print()
                print("## The servers alone")
                print()
                print(
                    "| redis-benchmark, 50 clients | ops/s (wall, client on the same cores) | ops per redis-server CPU-second | redis-server cores busy |"
                )
                print("|---|---|---|---|")
                print("\n".join(redis_benchmark(servers)))
                print()
                print(
                    "| bare aio-pika, publish (confirms) + consume (acks) | messages/s (wall) | RabbitMQ CPU µs/message | messages per RabbitMQ CPU-second |"
                )
                print("|---|---|---|---|")
                for size in (1000, 8000):
                    print(await broker_alone(servers, 20_000, size))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-emulator"]:
        asyncio.run(serve_emulator(*(int(a) for a in sys.argv[2:5])))
    else:
        asyncio.run(main())
