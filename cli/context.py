"""What every command works with: the settings, the pool's keys and names, the connections."""

from __future__ import annotations

import typing

from shared import amqp, keys, redis_client, topology

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc

    from cli import output
    from shared import config
    from shared.secret import Secret

__all__ = ("Context",)


class Context:
    """One command's connections: Redis at once (it connects lazily), RabbitMQ on first use."""

    def __init__(self, settings: config.OperatorSettings, out: output.Output) -> None:
        self.settings = settings
        self.out = out
        self.keys = keys.RedisKeys(settings.namespace, settings.pool)
        self.names = topology.Topology(settings.namespace)
        self.redis: aioredis.Redis = redis_client.connect(settings.redis_url)
        self.amqp: pika_abc.AbstractConnection | None = None

    async def connection(self) -> pika_abc.AbstractConnection:
        if self.amqp is None:
            self.amqp = await amqp.connect(self.settings.amqp_urls or (self.settings.amqp_url,))
        return self.amqp

    async def channel(self) -> pika_abc.AbstractChannel:
        return await (await self.connection()).channel()

    @property
    def signing_key(self) -> Secret:
        """The admin key; ``cli.__main__.run`` checks it is set before a command that signs."""
        assert self.settings.admin_key is not None
        return self.settings.admin_key

    async def close(self) -> None:
        try:
            await self.redis.aclose()
        finally:
            if self.amqp is not None:
                await self.amqp.close()
