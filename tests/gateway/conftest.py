"""Running gateways against the emulator, real RabbitMQ and real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import typing

import orjson
import pytest

from gateway import app
from shared import config, keys, topology
from shared import interests as shared_interests
from shared.secret import Secret
from tests import servers

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc

    from playground.discord import emulator


@dataclasses.dataclass
class Stack:
    """Everything a gateway test needs, isolated by ``namespace``."""

    discord: emulator.DiscordEmulator
    namespace: str
    amqp_url: str
    redis_url: str
    redis: aioredis.Redis
    connection: pika_abc.AbstractRobustConnection
    mongo_url: str
    pool: str = "main"
    #: The operator's key, held by the stack's gateways and by ``shardline`` in tests.
    admin_key: Secret = dataclasses.field(default_factory=lambda: Secret(secrets.token_hex(32)))

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DISCORD_TOKEN": self.discord.token,
            "DISCORD_API_URL": self.discord.api_url,
            "AMQP_URL": self.amqp_url,
            "REDIS_URL": self.redis_url,
            "MONGO_URL": self.mongo_url,
            "NAMESPACE": self.namespace,
            "POOL": self.pool,
            "HEALTH_PORT": "0",
            "LOG_LEVEL": "INFO",
            "ADMIN_KEY": self.admin_key.reveal(),
            **extra,
        }

    @property
    def topology(self) -> topology.Topology:
        return topology.Topology(self.namespace)

    @property
    def keys(self) -> keys.RedisKeys:
        return keys.RedisKeys(self.namespace, self.pool)

    async def listen(self, events: list[str], group: str = "default") -> EventSink:
        """What a worker group does: bind its queue and announce its interests."""
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue, interactions = await self.topology.declare_worker_queues(
            channel, self.pool, group, events
        )
        await shared_interests.announce(self.redis, self.keys, group, events, replace=True)
        sink = EventSink()
        await queue.consume(sink.on_message)
        await interactions.consume(sink.on_message)
        return sink

    @contextlib.asynccontextmanager
    async def gateway(self, **extra: str) -> typing.AsyncIterator[app.GatewayApp]:
        gateway_app = app.GatewayApp(config.GatewaySettings.from_env(self.env(**extra)))
        try:
            await gateway_app.start()
            yield gateway_app
        finally:
            await gateway_app.close()

    def spawn(self, **extra: str) -> subprocess.Popen[bytes]:
        """A real ``python -m gateway`` process."""
        env = {**os.environ, **self.env(**extra)}
        return subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


class EventSink:
    """Collects envelopes as a worker would receive them (acking each message)."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, typing.Any]] = []
        self.messages: list[pika_abc.AbstractIncomingMessage] = []

    async def on_message(self, message: pika_abc.AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        self.envelopes.extend(body if isinstance(body, list) else [body])
        self.messages.append(message)
        await message.ack()

    def of(self, name: str) -> list[dict[str, typing.Any]]:
        return [e for e in self.envelopes if e["t"] == name]


@pytest.fixture
async def stack(
    discord: emulator.DiscordEmulator,
    namespace: str,
    amqp_url: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    amqp_connection: pika_abc.AbstractRobustConnection,
    mongo_url: str,
) -> Stack:
    return Stack(discord, namespace, amqp_url, redis_url, redis_client, amqp_connection, mongo_url)


async def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> str:
    process.send_signal(sig)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, process.wait, 30)
    assert process.stderr is not None
    return process.stderr.read().decode(errors="replace")


__all__ = ["EventSink", "Stack", "servers", "stop_process"]
