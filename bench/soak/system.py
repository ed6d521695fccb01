"""The system under test: private servers, the emulated Discord, gateways and workers.

RabbitMQ, Redis and mongod are private instances (tests/servers.py) so the nemesis may kill,
hang and restart them. The gateways and workers are real ``python -m gateway`` / ``python -m
worker`` processes; they reach RabbitMQ through a proxy that can add latency. A process that
exits without the nemesis having asked is recorded and started again (a restart policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time
import typing

import redis.asyncio as aioredis

from bench.soak import netdelay
from playground.discord import emulator, gateway, sessions
from shared import keys
from tests import servers

ROOT: typing.Final = pathlib.Path(__file__).resolve().parent.parent.parent
NAMESPACE: typing.Final = "soak"
POOL: typing.Final = "main"
#: Seconds a SIGTERMed process has to drain before it is killed.
STOP_TIMEOUT: typing.Final = 40.0
#: Gateways' lease TTL: a killed gateway's shards are free again this many seconds later.
LEASE_TTL: typing.Final = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    gateways: int = 2
    workers: int = 3
    shards: int = 4
    guilds: int = 24
    channels: int = 6
    users: int = 300
    max_concurrency: int = 2
    #: The session-start window, shortened from Discord's day so it rolls over in a run.
    session_start_total: int = 60
    session_start_window: float = 90.0


@dataclasses.dataclass(slots=True)
class Exit:
    name: str
    pid: int
    code: int
    at: float
    expected: bool
    log: str


@dataclasses.dataclass(slots=True)
class Proc:
    name: str
    role: str
    popen: subprocess.Popen[bytes]
    log: pathlib.Path
    started_at: float
    #: Set by the nemesis before it signals the process: its exit is not a finding.
    expected_exit: bool = False
    rss: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    """(time, MiB) samples."""

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


class System:
    def __init__(self, workdir: pathlib.Path, layout: Layout) -> None:
        self.workdir = workdir
        self.layout = layout
        self.redis = servers.PrivateRedis(self._dir("redis"), persist=True)
        self.rabbit = servers.PrivateRabbitMQ(self._dir("rabbit"))
        self.mongo = servers.MongoServer(self._dir("mongod"))
        self.broker_proxy = netdelay.DelayProxy(servers.free_port(), self.rabbit.port)
        options = gateway.GatewayOptions(
            max_concurrency=layout.max_concurrency,
            recommended_shards=layout.shards,
            session_start_total=layout.session_start_total,
            session_start_remaining=layout.session_start_total,
            session_start_reset_after=layout.session_start_window,
            heartbeat_interval=10.0,
        )
        self.discord = emulator.DiscordEmulator(gateway_options=options)
        self.procs: list[Proc] = []
        self.exits: list[Exit] = []
        self.channels: list[int] = []
        self.guilds: list[int] = []
        self._counter: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: Interaction id: when the emulator last sent its INTERACTION_CREATE on an open
        #: connection (the gateway's clock of guarantee 4 starts there).
        self.delivered: dict[int, float] = {}

    def _dir(self, name: str) -> pathlib.Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            loop.run_in_executor(None, self.redis.start),
            loop.run_in_executor(None, self.rabbit.start),
            loop.run_in_executor(None, self.mongo.start),
        )
        await self.broker_proxy.start()
        await self.discord.start()
        self._watch_deliveries()
        self._populate()
        for _ in range(self.layout.workers):
            self.spawn("worker")
        await self.workers_ready(self.layout.workers)
        for _ in range(self.layout.gateways):
            self.spawn("gateway")
        await self.discord.wait_for(
            lambda: len(self.discord.connected_shards()) == self.layout.shards,
            timeout=120,
            what="every shard connected",
        )
        await asyncio.sleep(3.0)  # the gateways have read the workers' interests
        self._tasks.append(loop.create_task(self._watch()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(
            *(self.stop(p, signal.SIGTERM, timeout=15) for p in self.procs if p.alive)
        )
        with contextlib.suppress(Exception):
            await self.discord.close()
        await self.broker_proxy.close()
        loop = asyncio.get_running_loop()
        self.resume_redis()
        await asyncio.gather(
            loop.run_in_executor(None, self.redis.stop),
            loop.run_in_executor(None, self.rabbit.shutdown),
            loop.run_in_executor(None, self.mongo.stop),
        )

    def _watch_deliveries(self) -> None:
        """Note when each INTERACTION_CREATE goes out on an open connection (sent live or
        replayed on RESUME): the emulator's side of the wire, not the platform's word."""
        delivered = self.delivered
        send = sessions.Connection.send

        def noting(connection: sessions.Connection, payload: typing.Any) -> None:
            if (
                not connection.closed
                and isinstance(payload, dict)
                and payload.get("t") == "INTERACTION_CREATE"
            ):
                # The last send counts: one to a gateway being killed (its socket not yet
                # seen closed) is lost with it, and the RESUME replay is what gets handled.
                delivered[int(payload["d"]["id"])] = time.time()
            send(connection, payload)

        sessions.Connection.send = noting  # type: ignore[method-assign]

    def _populate(self) -> None:
        layout = self.layout
        for index in range(layout.guilds):
            guild = self.discord.add_guild(
                f"soak-{index}", shard=(index % layout.shards, layout.shards),
                channels=layout.channels,
            )  # fmt: skip
            guild_id = int(guild["id"])
            self.guilds.append(guild_id)
            self.channels += [int(c["id"]) for c in self.discord.channels_of(guild_id)]

    # --- processes --------------------------------------------------------------------------

    def env(self, role: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DISCORD_TOKEN": self.discord.token,
            "DISCORD_API_URL": self.discord.api_url,
            "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{self.broker_proxy.port}/",
            "REDIS_URL": self.redis.url,
            "MONGO_URL": self.mongo.url,
            "NAMESPACE": NAMESPACE,
            "POOL": POOL,
            "HEALTH_PORT": "0",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
        }
        if role == "gateway":
            env |= {"SHARD_COUNT": str(self.layout.shards), "LEASE_TTL": str(LEASE_TTL)}
        else:
            env |= {"WORKER_PLUGINS": "worker.plugins.core,bench.soak.plugin"}
        return env

    def spawn(self, role: str, name: str | None = None) -> Proc:
        if name is None:
            self._counter[role] = self._counter.get(role, 0) + 1
            name = f"{role}-{self._counter[role]}"
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", role],
                env=self.env(role),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        proc = Proc(name, role, popen, log, time.time())
        self.procs.append(proc)
        return proc

    def live(self, role: str) -> list[Proc]:
        return [p for p in self.procs if p.role == role and p.alive]

    async def stop(self, proc: Proc, sig: int, *, timeout: float = STOP_TIMEOUT) -> None:
        """Signal ``proc`` (its exit is expected) and wait for it to go."""
        proc.expected_exit = True
        if not proc.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(sig)
        # Polled, not waited for in a thread: the default executor has a handful of threads,
        # and the servers' slow starts and stops need them (a rolling update once queued its
        # waits behind them for minutes while the replicas it started piled up).
        deadline = time.monotonic() + timeout
        while proc.popen.poll() is None:
            if time.monotonic() > deadline:
                proc.popen.kill()
            await asyncio.sleep(0.1)

    async def workers_ready(self, count: int, timeout: float = 60) -> None:
        """``count`` replicas heartbeat (so each has bound its queue)."""
        client = aioredis.Redis.from_url(self.redis.url)
        schema = keys.RedisKeys(NAMESPACE, POOL)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if await asyncio.wait_for(client.zcard(schema.workers()), 1) >= count:
                        return
                await asyncio.sleep(0.2)
        finally:
            await client.aclose()

    async def _watch(self) -> None:
        """Record exits; restart what died on its own (as a restart policy would)."""
        seen: set[int] = set()
        while True:
            for proc in list(self.procs):
                code = proc.popen.poll()
                if code is None:
                    self._sample_rss(proc)
                    continue
                if proc.popen.pid in seen:
                    continue
                seen.add(proc.popen.pid)
                tail = proc.log.read_text(errors="replace")[-3000:]
                self.exits.append(
                    Exit(proc.name, proc.popen.pid, code, time.time(), proc.expected_exit, tail)
                )
                if not proc.expected_exit:
                    print(f"soak: {proc.name} exited by itself ({code})", flush=True)
                    self.spawn(proc.role, proc.name)
            await asyncio.sleep(1.0)

    @staticmethod
    def _sample_rss(proc: Proc) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in pathlib.Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    proc.rss.append((time.time(), int(line.split()[1]) / 1024))
                    return

    # --- servers ----------------------------------------------------------------------------

    def _redis_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.redis.directory / "redis.pid").read_text().strip())
        return None

    def hang_redis(self) -> None:
        pid = self._redis_pid()
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)

    def resume_redis(self) -> None:
        pid = self._redis_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
