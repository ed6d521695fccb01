"""How fast one gateway process forwards dispatches to RabbitMQ, with confirms and no loss.

    .venv/bin/python -m bench.gateway_forward [--events 50000] [--bytes 780]

Runs, on this machine, against loopback RabbitMQ and Redis:

* the emulator (its own process) sending ``--events`` MESSAGE_CREATE of about ``--bytes``
  over zstd-stream to one shard of a real ``python -m gateway`` process, which publishes them
  to the events exchange; a consumer counts every envelope (none may be missing);
* in the same run, the reference: bare aio-pika publishing the same number of envelopes of the
  same size, one message each, with a window of 200 outstanding confirms.

Prints events/s, CPU seconds per 1,000 events, peak RSS (and, for the gateway, its RSS just
before the blast: what the backlog added) of each, and the ratios. ``--buffer N`` runs the
gateway again with ``PUBLISH_BUFFER=N`` (events held before its shards' reads pause).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import pathlib
import sys
import time
import uuid

import aio_pika
import orjson
import redis.asyncio as aioredis

from bench import cleanup
from shared import interests as shared_interests
from shared import keys, topology

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Result:
    name: str
    events: int
    seconds: float
    cpu: float
    peak_rss_mb: float
    #: The process's RSS just before the blast (its start-up, the shard connected).
    rss_before_mb: float = float("nan")

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu / self.events * 1000


class Counter:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seqs: set[int] = set()
        self.done = asyncio.Event()
        self.last = 0.0

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        for item in body if isinstance(body, list) else [body]:
            self.seqs.add(item["seq"])
        self.last = time.perf_counter()
        if len(self.seqs) >= self.expected:
            self.done.set()


def proc_cpu(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The peak RSS (``VmHWM``), or the current one (``VmRSS``), in MB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def consume(
    names: topology.Topology, group: str, counter: Counter
) -> aio_pika.abc.AbstractRobustConnection:
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=2000)
    queue, _ = await names.declare_worker_queues(channel, "main", group, ["MESSAGE_CREATE"])
    await queue.consume(counter.on_message, no_ack=True)
    return connection


async def gateway_case(namespace: str, events: int, size: int, buffer: int | None = None) -> Result:
    names = topology.Topology(namespace)
    redis = aioredis.Redis.from_url(REDIS_URL)
    redis_keys = keys.RedisKeys(namespace, "main")
    await shared_interests.announce(redis, redis_keys, "gateway", ["MESSAGE_CREATE"], replace=True)
    counter = Counter(events)
    consumer = await consume(names, "gateway", counter)
    emulator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.emulator_process",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert emulator.stdin is not None
    assert emulator.stdout is not None
    _, api_url, token = (await emulator.stdout.readline()).decode().split()
    env = {
        **os.environ, "DISCORD_TOKEN": token, "DISCORD_API_URL": api_url, "AMQP_URL": AMQP_URL,
        "REDIS_URL": REDIS_URL, "NAMESPACE": namespace, "SHARD_COUNT": "1", "SHARD_IDS": "0",
        "HEALTH_PORT": "0", "LOG_LEVEL": "WARNING",
        **({} if buffer is None else {"PUBLISH_BUFFER": str(buffer)}),
    }  # fmt: skip
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-O", "-m", "gateway", env=env, cwd=ROOT
    )
    emulator.stdin.write(b"wait-shards 1\n")
    await emulator.stdin.drain()
    await emulator.stdout.readline()
    await asyncio.sleep(1.0)  # settle: the GUILD_CREATE burst, the first checkpoint
    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        profiler = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "py-spy"), "record", "-p", str(gateway.pid), "-o",
            os.environ["BENCH_PROFILE"], "-f", "speedscope", "-d", "6", "--nonblocking",
        )  # fmt: skip
        await asyncio.sleep(0.5)
    cpu_before = proc_cpu(gateway.pid)
    rss_before = proc_peak_rss_mb(gateway.pid, "VmRSS")
    started = time.perf_counter()
    emulator.stdin.write(f"blast {events} {size}\n".encode())
    await emulator.stdin.drain()
    await asyncio.wait_for(counter.done.wait(), timeout=600)
    seconds = counter.last - started
    cpu = proc_cpu(gateway.pid) - cpu_before
    peak = proc_peak_rss_mb(gateway.pid)
    if profiler is not None:
        await profiler.wait()
    await emulator.stdout.readline()
    gateway.terminate()
    await gateway.wait()
    emulator.stdin.write(b"quit\n")
    await emulator.stdin.drain()
    await emulator.wait()
    await consumer.close()
    await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, ["gateway", "reference"])
    await redis.aclose()
    missing = events - len(counter.seqs)
    if missing:
        raise SystemExit(f"the gateway lost {missing} events")
    bound = "" if buffer is None else f", PUBLISH_BUFFER={buffer}"
    return Result(
        f"shardline gateway (hikari shard, batched confirms{bound})",
        events, seconds, cpu, peak, rss_before,
    )  # fmt: skip


async def reference_case(namespace: str, events: int, size: int) -> Result:
    names = topology.Topology(namespace)
    counter = Counter(events)
    consumer = await consume(names, "reference", counter)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-O", "-m", "bench.reference_publisher", AMQP_URL, names.events_exchange,
        names.event_key("main", "MESSAGE_CREATE"), str(events), str(size), "200",
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    _, seconds, cpu, maxrss_kb = (await process.stdout.readline()).decode().split()
    await process.wait()
    await asyncio.wait_for(counter.done.wait(), timeout=600)
    await consumer.close()
    await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, ["gateway", "reference"])
    return Result(
        "bare aio-pika, one message per event, 200 confirms in flight",
        events, float(seconds), float(cpu), int(maxrss_kb) / 1024,
    )  # fmt: skip


def report(results: list[Result]) -> str:
    lines = [
        "| forwarder | events/s | CPU s per 1k events | peak RSS | RSS before the blast |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {r.rate:,.0f} | {r.cpu_per_1k:.3f} | {r.peak_rss_mb:.0f} MB "
        f"| {r.rss_before_mb:.0f} MB |"
        for r in results
    ]
    ours, reference = results[0], results[-1]
    lines.append("")
    lines.append(
        f"ratio (gateway / reference): {ours.rate / reference.rate:.2f}x events/s, "
        f"{ours.cpu_per_1k / reference.cpu_per_1k:.2f}x CPU per event"
    )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--bytes", type=int, default=780)
    parser.add_argument(
        "--buffer",
        type=int,
        action="append",
        default=[],
        help="also run the gateway with PUBLISH_BUFFER at this bound (repeatable)",
    )
    args = parser.parse_args()
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    results = [
        await gateway_case(namespace, args.events, args.bytes),
        *[await gateway_case(namespace, args.events, args.bytes, bound) for bound in args.buffer],
        await reference_case(namespace, args.events, args.bytes),
    ]
    print(report(results))


if __name__ == "__main__":
    asyncio.run(main())
