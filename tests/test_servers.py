"""The real servers the suite relies on answer: RabbitMQ, Redis, and the private mongod."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import aio_pika
import pymongo
import redis

from tests import servers

if TYPE_CHECKING:
    import pathlib

    import redis.asyncio as aioredis


async def test_redis_is_real(redis_client: aioredis.Redis, namespace: str) -> None:
    await redis_client.set(f"{namespace}:probe", "1", ex=10)
    assert await redis_client.get(f"{namespace}:probe") == b"1"
    info = await redis_client.info("server")
    assert int(str(info["redis_version"]).split(".")[0]) >= 6


async def test_rabbitmq_is_real(amqp_connection: aio_pika.abc.AbstractRobustConnection) -> None:
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await channel.default_exchange.publish(aio_pika.Message(b"ping"), routing_key=queue.name)
    message = await queue.get(timeout=5)
    assert message.body == b"ping"
    await message.ack()


async def test_mongod_is_real(mongo_url: str) -> None:
    client: pymongo.AsyncMongoClient[dict[str, object]] = pymongo.AsyncMongoClient(
        mongo_url, serverSelectionTimeoutMS=5000
    )
    try:
        assert (await client.admin.command("ping"))["ok"] == 1.0
        build = await client.admin.command("buildInfo")
        assert str(build["version"]).startswith("6.0")
        collection = client.shardline_test.probe
        await collection.insert_one({"_id": 1, "v": "x"})
        assert await collection.find_one({"_id": 1}) == {"_id": 1, "v": "x"}
    finally:
        await client.close()


def test_a_broker_that_accepts_but_never_answers_is_told_apart_from_a_live_one(
    amqp_url: str,
) -> None:
    """A wedged node (out of file descriptors) accepts TCP and never answers: the session must
    fail at once with a way out, not let every test wait two minutes for its own timeout."""
    assert servers.amqp_answers(servers.AMQP_PORT)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert not servers.amqp_answers(silent.getsockname()[1], timeout=0.5)


def test_a_persistent_private_redis_keeps_writes_through_a_kill_and_wipe_empties_it(
    tmp_path: pathlib.Path,
) -> None:
    """The soak's ``redis-restart`` (production's append-only file) and ``redis-wipe``."""
    server = servers.PrivateRedis(tmp_path, persist=True)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("kept", "1")  # answered: in the append-only file, not yet fsynced
        server.stop()  # SIGKILL
        server.start()
        assert redis.Redis.from_url(server.url).get("kept") == b"1"
        server.stop()
        server.wipe()
        server.start()
        assert redis.Redis.from_url(server.url).get("kept") is None
    finally:
        server.stop()
