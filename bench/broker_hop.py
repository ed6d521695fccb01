"""The broker hop alone: what one event costs to cross RabbitMQ, with nothing of Shardline.

    .venv/bin/python -m bench.broker_hop [--rates 250,1000] [--seconds 8] [--bytes 780]

A bare aio-pika publisher (publisher confirms, persistent messages, one message per event,
confirms awaited per message with any number in flight) and a bare consumer in a process of
its own (as a worker is; prefetch 100, ack per message), paced at fixed rates, through a
quorum queue and through a classic queue. Each message carries the wall-clock time it was
published; the consumer subtracts it when the message arrives. This is the floor under the
end-to-end latency benchmark (``bench.latency``), which adds the gateway, the dedupe claim
and typed hikari events on top, on the same cores.

The CPU both clients spend per event (the quorum queue's run, publisher and consumer, each
process's own from its first event to its last) is the floor under ``bench.latency``'s CPU
per event in the same way: what any design that puts one broker message per event between
two processes pays before it does anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import resource
import statistics
import sys
import time
import uuid

import aio_pika

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = pathlib.Path(__file__).resolve().parent.parent
WARM_UP_SECONDS = 1.0


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def consume(name: str, count: int, skip: int) -> None:
    """The consumer process: print ``ready``, then ``p50 p99 p99.9`` (ms) and its CPU ms per
    message after ``count``."""
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)
    latencies: list[float] = []
    done = asyncio.Event()
    first = 0.0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal first
        if not latencies:
            first = cpu()
        latencies.append(time.time() - float(message.body.split(b" ", 1)[0]))
        await message.ack()
        if len(latencies) >= count:
            done.set()

    queue = await channel.get_queue(name)
    tag = await queue.consume(on_message)
    print("ready", flush=True)
    await asyncio.wait_for(done.wait(), timeout=300)
    used = (cpu() - first) / max(count - 1, 1) * 1000
    await queue.cancel(tag)
    await connection.close()
    cuts = statistics.quantiles(sorted(latencies[skip:]), n=1000, method="inclusive")
    print(f"{cuts[499] * 1000} {cuts[989] * 1000} {cuts[998] * 1000} {used}", flush=True)


async def hop(kind: str, rate: float, seconds: float, size: int) -> list[float]:
    """p50, p99 and p99.9 (ms) of publish-to-delivery through one queue of ``kind``, then the
    publisher's and the consumer's CPU ms per message."""
    name = f"bench-hop-{uuid.uuid4().hex[:8]}"
    count = int(rate * seconds)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": kind})
        consumer = await asyncio.create_subprocess_exec(
            sys.executable, "-O", "-m", "bench.broker_hop", "--consume", name,
            str(count), str(int(rate * WARM_UP_SECONDS)),
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert consumer.stdout is not None
        await consumer.stdout.readline()  # ready
        padding = b"x" * size
        confirms: set[asyncio.Future[object]] = set()
        start, started_cpu = time.perf_counter(), cpu()
        for index in range(count):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = f"{time.time()} ".encode() + padding
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            confirm = asyncio.ensure_future(channel.default_exchange.publish(message, name))
            confirms.add(confirm)
            confirm.add_done_callback(confirms.discard)
        if confirms:
            await asyncio.wait(set(confirms))
        published = (cpu() - started_cpu) / count * 1000
        result = (await consumer.stdout.readline()).decode().split()
        if await consumer.wait() or len(result) != 4:
            raise SystemExit(f"the consumer of {name} failed (exit {consumer.returncode})")
        await queue.delete(if_unused=False, if_empty=False)
        return [*(float(value) for value in result[:3]), published, float(result[3])]
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rates", default="250,1000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--bytes", type=int, default=780)
    parser.add_argument("--consume", nargs=3, metavar=("QUEUE", "COUNT", "SKIP"), help="internal")
    args = parser.parse_args()
    if args.consume:
        name, count, skip = args.consume
        await consume(name, int(count), int(skip))
        return
    lines = [
        (
            "| messages/s | quorum queue p50 / p99 / p99.9 (ms) | classic queue p50 / p99 / p99.9"
            " (ms) | quorum: CPU ms per message, publisher + consumer |"
        ),
        "|---|---|---|---|",
    ]
    for rate in (float(r) for r in args.rates.split(",")):
        row = [await hop(kind, rate, args.seconds, args.bytes) for kind in ("quorum", "classic")]
        cells = " | ".join(" / ".join(f"{v:.2f}" for v in cuts[:3]) for cuts in row)
        published, consumed = row[0][3:]
        cost = f"{published + consumed:.3f} ({published:.3f} + {consumed:.3f})"
        lines.append(f"| {rate:,.0f} | {cells} | {cost} |")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
