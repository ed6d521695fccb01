"""One worker replica: connects, binds what its listeners need, consumes, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import secrets
import typing

import aio_pika
import hikari

from shared import health, keys, lifecycle, redis_client, topology
from shared.cache import reader
from worker import bot as bot_module
from worker import consumer, dedupe, events, interactions, metrics

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import config

_LOGGER = logging.getLogger("shardline.worker")
#: Messages in flight per replica; measured: 10 and up saturate one replica's consume loop.
PREFETCH: typing.Final[int] = 64
DRAIN_TIMEOUT: typing.Final[float] = 30.0


class PluginError(RuntimeError):
    """A module named in WORKER_PLUGINS could not be loaded."""


def load_plugins(bot: bot_module.Bot, modules: typing.Iterable[str]) -> None:
    """Import each plugin and call its ``setup(bot)``."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise PluginError(f"WORKER_PLUGINS: cannot import {name!r}: {exc}") from exc
        setup = getattr(module, "setup", None)
        if not callable(setup):
            raise PluginError(f"WORKER_PLUGINS: {name!r} has no setup(bot) function")
        setup(bot)


class WorkerApp:
    def __init__(self, settings: config.WorkerSettings, bot: bot_module.Bot | None = None) -> None:
        self.settings = settings
        self.bot = bot or bot_module.Bot()
        core = settings.core
        self.worker_id = f"{core.pool}-{settings.group}-{secrets.token_hex(4)}"
        self.topology = topology.Topology(core.namespace)
        self.keys = keys.RedisKeys(core.namespace, core.pool)
        self.consumer: consumer.EventConsumer | None = None
        self.deduplicator: dedupe.Deduplicator | None = None
        self.health: health.HealthServer | None = None
        self._amqp: aio_pika.abc.AbstractRobustConnection | None = None
        self._redis: aioredis.Redis | None = None
        self._rest_app: hikari.RESTApp | None = None
        self._rest: hikari.impl.RESTClientImpl | None = None
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        events.check_compatibility()
        core = self.settings.core
        load_plugins(self.bot, self.settings.plugins)
        self._redis = redis_client.connect(core.redis_url)
        self._amqp = await aio_pika.connect_robust(core.amqp_url.reveal())
        channel = await self._amqp.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        self._rest_app = hikari.RESTApp(url=core.api_url)
        await self._rest_app.start()
        self._rest = self._rest_app.acquire(core.token.reveal(), hikari.TokenType.BOT)
        self._rest.start()
        self.bot.attach(
            rest=interactions.InteractionAwareRest(self._rest),
            cache=reader.CacheReader(self._redis, self.keys, self.bot.entity_factory),
            channel=channel,
            pool=core.pool,
            namespace=core.namespace,
        )
        wanted = self.bot.events.listened_gateway_events()
        queues = await self._bind(channel, wanted)
        self.consumer = consumer.EventConsumer(
            self.bot,
            channel,
            self.topology,
            dedupe.Deduplicator(self._redis, self.keys, self.worker_id),
        )
        await self.consumer.start(queues)
        self.health = health.HealthServer(
            core.health_port, ready=self.readiness, metrics=lambda: metrics.render(self)
        )
        await self.health.start()
        _LOGGER.info("worker consuming", extra={"worker": self.worker_id, "events": wanted})

    async def _bind(
        self, channel: aio_pika.abc.AbstractChannel, wanted: list[str]
    ) -> tuple[aio_pika.abc.AbstractQueue, aio_pika.abc.AbstractQueue]:
        """Bind the group's queues to what its listeners need, announce it to the gateways,
        and unbind what the previous deploy listened to and this one does not."""
        assert self._redis is not None
        core = self.settings.core
        interests = self.keys.interests(self.settings.group)
        previous = {
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await self._redis.smembers(interests)
        }
        queues = await self.topology.declare_worker_queues(
            channel, core.pool, self.settings.group, wanted
        )
        stale = previous - set(wanted)
        if stale:
            await self.topology.unbind_worker_events(channel, core.pool, self.settings.group, stale)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(interests)
            if wanted:
                pipe.sadd(interests, *wanted)
            pipe.sadd(self.keys.interest_groups(), self.settings.group)
            await pipe.execute()
        return queues

    def readiness(self) -> str | None:
        if self.consumer is None:
            return "starting"
        if self._amqp is None or self._amqp.is_closed:
            return "broker connection closed"
        return None

    async def close(self) -> None:
        """Stop intake, let in-flight handlers finish, then disconnect."""
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.consumer.stop_intake(), 5)
            await self.consumer.drain(DRAIN_TIMEOUT)
        if self.deduplicator is not None:
            await self.deduplicator.flush()
        if self.health is not None:
            await self.health.close()
        if self._rest is not None:
            await self._rest.close()
        if self._rest_app is not None:
            await self._rest_app.close()
        if self._amqp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._amqp.close(), 5)
        if self._redis is not None:
            await self._redis.aclose()

    async def run(self) -> None:
        """Start, consume until SIGTERM, then drain in-flight handlers."""
        await lifecycle.run_until_stopped(
            name="worker",
            start=self.start,
            close=self.close,
            stopping=self.stopping,
            secrets=(*self.settings.core.secrets(), self.settings.mongo_url),
        )
