"""Remove what a benchmark run declared on the broker and wrote to Redis."""

from __future__ import annotations

import typing

import aio_pika
import redis.asyncio as aioredis

from shared import config, topology


async def cleanup(
    amqp_url: str, redis_url: str, namespace: str, groups: typing.Iterable[str]
) -> None:
    names = topology.Topology(namespace)
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    for group in groups:
        for work in (names.worker_queue("main", group), names.interaction_queue("main", group)):
            await channel.queue_delete(work)
            for delay in config.DEFAULT_RETRY_DELAYS:
                await channel.queue_delete(names.retry_queue(work, delay))
    exchanges, queues = names.all_static_names()
    for queue in queues:
        await channel.queue_delete(queue)
    for exchange in exchanges:
        await channel.exchange_delete(exchange)
    await connection.close()
    redis = aioredis.Redis.from_url(redis_url)
    found = [k async for k in redis.scan_iter(match=f"{namespace}:*", count=5000)]
    for start in range(0, len(found), 1000):
        await redis.unlink(*found[start : start + 1000])
    await redis.aclose()
