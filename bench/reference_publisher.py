"""The reference forwarder: bare aio-pika, one message per envelope, a window of confirms.

``python -m bench.reference_publisher AMQP_URL EXCHANGE ROUTING_KEY COUNT BYTES WINDOW`` prints
``done SECONDS CPU_SECONDS``.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time

import aio_pika
import orjson


def envelope(index: int, size: int) -> bytes:
    body = {
        "v": 1, "pool": "main", "gateway": "reference", "reply_to": "reference",
        "shard": [0, 1], "session": "s", "seq": index, "t": "MESSAGE_CREATE",
        "d": {"id": str(index), "content": ""}, "ts": time.time(),
    }  # fmt: skip
    padding = max(size - len(orjson.dumps(body)), 0)
    body["d"]["content"] = "x" * padding
    return orjson.dumps(body)


async def main(url: str, exchange_name: str, key: str, count: int, size: int, window: int) -> None:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(exchange_name)
    bodies = [envelope(i, size) for i in range(count)]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    slots = asyncio.Semaphore(window)
    tasks: set[asyncio.Task[object]] = set()

    def release(task: asyncio.Task[object]) -> None:
        tasks.discard(task)
        slots.release()

    for body in bodies:
        await slots.acquire()
        task = asyncio.ensure_future(exchange.publish(aio_pika.Message(body), key))
        tasks.add(task)
        task.add_done_callback(release)
    if tasks:
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"done {elapsed:.4f} {cpu:.4f} {cpu1.ru_maxrss}", flush=True)
    await connection.close()


if __name__ == "__main__":
    url, exchange_name, key, count, size, window = sys.argv[1:7]
    asyncio.run(main(url, exchange_name, key, int(count), int(size), int(window)))
