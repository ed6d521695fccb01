"""The nemesis: a fault schedule drawn up front from ``random.Random(seed)``, then played.

The same seed, length and fault list give the same schedule (printed before the run).
Faults overlap as they would in production, except where one resource cannot take two at
once (Redis cannot be hung and restarted together), and at least one gateway and one worker
are left running by the kills (a fleet that loses every replica at once is an outage, not a
fault to recover from). Each fault records when it really started and ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import signal
import time
import typing

import aio_pika
import orjson

from bench.soak import system as system_module
from shared import topology

#: kind: (shortest, longest) seconds, and the resources it holds (name, capacity).
KINDS: typing.Final[dict[str, tuple[float, float, tuple[str, ...]]]] = {
    "worker-kill": (1.0, 5.0, ("workers",)),
    "worker-term": (1.0, 5.0, ("workers",)),
    "gateway-kill": (1.0, 6.0, ("gateways",)),
    "gateway-term": (1.0, 6.0, ("gateways",)),
    "rolling-update": (0.0, 0.0, ("workers", "workers", "gateways", "scale")),
    "scale-gateways": (10.0, 25.0, ("scale",)),
    "redis-hang": (2.0, 8.0, ("redis",)),
    "redis-restart": (1.0, 4.0, ("redis",)),
    "rabbit-restart": (1.0, 4.0, ("rabbit",)),
    "mongo-stop": (5.0, 15.0, ("mongo",)),
    "storm": (3.0, 8.0, ("storm",)),
    "broker-latency": (5.0, 15.0, ("link",)),
    "poison": (0.0, 0.0, ()),
    "redis-wipe": (1.0, 4.0, ("redis",)),
}
#: What a run plays unless ``--faults`` says otherwise: every kind but ``redis-wipe``. The
#: platform's Redis runs as production does, with its append-only file (``appendonly yes``:
#: docker-compose.yml, docs/operations.md), and ``redis-restart`` kills it and starts it
#: again from that file. ``redis-wipe`` restarts it empty, a Redis deployed without
#: persistence: what that loses is the bound measured in docs/soak.md, not a defect.
DEFAULT_KINDS: typing.Final = tuple(kind for kind in KINDS if kind != "redis-wipe")
CAPACITY: typing.Final = {"workers": 2, "gateways": 1}
_SERVERS: typing.Final = frozenset({"redis", "rabbit", "mongo"})
_NO_LOCK: typing.Final = contextlib.nullcontext()
#: Seconds a rolling update is assumed to hold its resources when the schedule is drawn.
ROLLING_SPAN: typing.Final = 40.0
#: Seconds left quiet at the start (the system settles) and at the end (it recovers).
WARMUP: typing.Final = 5.0
TAIL: typing.Final = 10.0


@dataclasses.dataclass(slots=True)
class Fault:
    kind: str
    at: float
    """Seconds after the load started."""
    duration: float
    pick: int
    """Which process (index into the live ones) or shard a targeted fault hits."""
    started: float | None = None
    ended: float | None = None
    note: str = ""
    delay: float = 0.0
    """``broker-latency``: seconds added each way."""

    def describe(self) -> str:
        return f"{self.at:7.1f}s  {self.kind:<15} for {self.duration:4.1f}s  pick {self.pick}"


def schedule(seed: int, seconds: float, kinds: typing.Sequence[str]) -> list[Fault]:
    """About one fault every 6 s in [WARMUP, seconds - TAIL], resources permitting."""
    rng = random.Random(seed)
    window_end = max(WARMUP + 1, seconds - TAIL)
    count = max(1, round((window_end - WARMUP) / 6))
    drawn = sorted(
        (rng.uniform(WARMUP, window_end), rng.choice(list(kinds)), rng.random(), rng.randrange(1 << 30))
        for _ in range(count)
    )  # fmt: skip
    busy: dict[str, list[float]] = {}
    faults = []
    for at, kind, spread, pick in drawn:
        shortest, longest, holds = KINDS[kind]
        duration = round(shortest + spread * (longest - shortest), 1)
        span = ROLLING_SPAN if kind == "rolling-update" else duration + 3.0
        start = at
        for resource in set(holds):
            ends = sorted(busy.get(resource, []))
            need = holds.count(resource)
            free = CAPACITY.get(resource, 1) - need
            while len([e for e in ends if e > start]) > free:
                start = min(e for e in ends if e > start)
        if start > window_end:
            continue
        for resource in holds:
            busy.setdefault(resource, []).append(start + span)
        faults.append(Fault(kind, round(start, 1), duration, pick))
    return sorted(faults, key=lambda f: f.at)


class Nemesis:
    def __init__(
        self, system: system_module.System, faults: list[Fault], *, seconds: float | None = None
    ) -> None:
        self.system = system
        self.faults = faults
        #: The load's length: a fault that waited for its turn past it is not played.
        self.seconds = seconds
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(self, started: float) -> None:
        """Play every fault (each its own task, so they overlap) ``at`` after ``started``."""
        await asyncio.gather(*(self._play(f, started) for f in self.faults))

    async def _play(self, fault: Fault, started: float) -> None:
        await asyncio.sleep(max(0.0, started + fault.at - time.time()))
        # A server's restart can outlast the span the schedule allowed for it (RabbitMQ takes
        # 5-15 s to start on a loaded machine): the next fault on it waits its turn.
        server = next((r for r in KINDS[fault.kind][2] if r in _SERVERS), None)
        if fault.kind == "poison":
            server = "rabbit"  # published through the broker: after a restart under way
        elif fault.kind == "rolling-update":
            # One deploy at a time: one outlasting its span (Redis away, replicas slow to
            # report ready) would otherwise replace the next one's new replicas too, and
            # the fleet would grow with every overlap (seed 51645 reached 30 workers).
            server = "deploy"
        lock = self._locks.setdefault(server, asyncio.Lock()) if server else _NO_LOCK
        if fault.kind == "rolling-update" and isinstance(lock, asyncio.Lock) and lock.locked():
            # A deploy outlasting its span (a whole fleet replaced one by one takes 40-140 s
            # here) is superseded by the next rather than queued: queued, seed 753623's ran one
            # after another until 280 s past the load's end, every process always handing off.
            fault.started = fault.ended = time.time()
            fault.note = "skipped: a deploy is under way"
            return
        async with lock:
            if self.seconds is not None and time.time() > started + self.seconds:
                fault.started = fault.ended = time.time()
                fault.note = "skipped: waited its turn past the load's end"
                return
            fault.started = time.time()
            try:
                await getattr(self, "_" + fault.kind.replace("-", "_"))(fault)
            except Exception as exc:
                fault.note = f"{fault.note} failed: {exc!r}".strip()
            fault.ended = time.time()
        print(f"soak: fault {fault.kind} {fault.started - started:.1f}s-"
              f"{fault.ended - started:.1f}s {fault.note}", flush=True)  # fmt: skip

    # --- processes --------------------------------------------------------------------------

    async def _signal_and_restart(self, fault: Fault, role: str, sig: int) -> None:
        # Not one another fault is already stopping: two faults never share a victim.
        live = [p for p in self.system.live(role) if not p.expected_exit]
        if len(live) <= 1:
            fault.note = f"skipped: only {len(live)} {role} running"
            return
        victim = live[fault.pick % len(live)]
        fault.note = victim.name
        await self.system.stop(victim, sig)
        await asyncio.sleep(fault.duration)
        self.system.spawn(role, victim.name)

    async def _worker_kill(self, fault: Fault) -> None:
        await self._signal_and_restart(fault, "worker", signal.SIGKILL)

    async def _worker_term(self, fault: Fault) -> None:
        await self._signal_and_restart(fault, "worker", signal.SIGTERM)

    async def _gateway_kill(self, fault: Fault) -> None:
        await self._signal_and_restart(fault, "gateway", signal.SIGKILL)

    async def _gateway_term(self, fault: Fault) -> None:
        await self._signal_and_restart(fault, "gateway", signal.SIGTERM)

    async def _rolling_update(self, fault: Fault) -> None:
        """``docker service update``: workers start-first, gateways stop-first, one at a time."""
        for old in self.system.live("worker"):
            live = len(self.system.live("worker"))
            self.system.spawn("worker")
            await self.system.workers_ready(live + 1, timeout=15)
            await self.system.stop(old, signal.SIGTERM)
        for old in self.system.live("gateway"):
            await self.system.stop(old, signal.SIGTERM)
            self.system.spawn("gateway")
            await asyncio.sleep(2.0)
        fault.note = "every worker and gateway replaced"

    async def _scale_gateways(self, fault: Fault) -> None:
        extra = self.system.spawn("gateway")
        fault.note = f"{extra.name} added, then removed"
        await asyncio.sleep(fault.duration)
        await self.system.stop(extra, signal.SIGTERM)

    # --- servers ----------------------------------------------------------------------------

    async def _redis_hang(self, fault: Fault) -> None:
        self.system.hang_redis()
        try:
            await asyncio.sleep(fault.duration)
        finally:
            self.system.resume_redis()

    async def _redis_restart(self, fault: Fault) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.system.redis.stop)  # SIGKILL
        await asyncio.sleep(fault.duration)
        await loop.run_in_executor(None, self.system.redis.start)  # from its append-only file

    async def _redis_wipe(self, fault: Fault) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.system.redis.stop)  # SIGKILL
        await loop.run_in_executor(None, self.system.redis.wipe)
        await asyncio.sleep(fault.duration)
        await loop.run_in_executor(None, self.system.redis.start)  # empty

    async def _rabbit_restart(self, fault: Fault) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.system.rabbit.stop)  # SIGKILL
        await asyncio.sleep(fault.duration)
        await loop.run_in_executor(None, self.system.rabbit.start)

    async def _mongo_stop(self, fault: Fault) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.system.mongo.stop)
        await asyncio.sleep(fault.duration)
        await loop.run_in_executor(None, self.system.mongo.start)

    # --- the network and Discord ------------------------------------------------------------

    async def _storm(self, fault: Fault) -> None:
        rng = random.Random(fault.pick)
        discord = self.system.discord
        deadline = time.monotonic() + fault.duration
        forced = 0
        while time.monotonic() < deadline:
            connected = discord.connected_shards()
            if connected:
                shard = rng.choice(connected)
                if rng.random() < 0.3:
                    discord.force_invalid_session(shard, resumable=True)
                else:
                    discord.force_reconnect(shard)
                forced += 1
            await asyncio.sleep(0.5)
        fault.note = f"{forced} RECONNECT/INVALID_SESSION"

    async def _broker_latency(self, fault: Fault) -> None:
        delay = 0.05 + (fault.pick % 1000) / 1000 * 0.35
        self.system.broker_proxy.delay = fault.delay = delay
        fault.note = f"{delay * 1000:.0f} ms each way"
        try:
            await asyncio.sleep(fault.duration)
        finally:
            self.system.broker_proxy.delay = 0.0

    async def _poison(self, fault: Fault) -> None:
        """Malformed envelopes, a MESSAGE_CREATE no model can be built from, and gateway
        commands that make no sense, published straight onto the broker."""
        names = topology.Topology(system_module.NAMESPACE)
        pool = system_module.POOL
        shard_count = self.system.layout.shards
        poison_event = {
            "v": 1, "pool": pool, "gateway": "nemesis", "reply_to": "nowhere",
            "shard": [0, shard_count], "session": "poison", "seq": fault.pick,
            "t": "MESSAGE_CREATE", "d": {"id": "not-a-snowflake", "content": None},
            "ts": time.time(),
        }  # fmt: skip
        events = [
            b"not json at all",
            orjson.dumps({"v": 99, "t": "MESSAGE_CREATE"}),
            orjson.dumps({"v": 1, "pool": pool, "t": "MESSAGE_CREATE"}),
            orjson.dumps(poison_event),
            orjson.dumps([poison_event, {"v": 1}]),
        ]
        commands = [
            b"\xff\xfe not json",
            orjson.dumps({"op": 99, "d": None}),
            orjson.dumps({"op": 4, "d": {"guild_id": "nope", "channel_id": 1}}),
            orjson.dumps({"kind": "voice", "shard": 10**9}),
        ]
        connection = await asyncio.wait_for(aio_pika.connect(self.system.rabbit.url), 10)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(names.events_exchange)
            for body in events:
                await exchange.publish(
                    aio_pika.Message(body), routing_key=names.event_key(pool, "MESSAGE_CREATE")
                )
            commands_exchange = await channel.get_exchange(names.commands_exchange)
            for shard in range(shard_count):
                for body in commands:
                    await commands_exchange.publish(
                        aio_pika.Message(body), routing_key=names.shard_key(pool, shard)
                    )
        fault.note = f"{len(events)} bad envelopes, {len(commands) * shard_count} bad commands"
