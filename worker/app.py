"""One worker replica: connects, binds what its listeners need, consumes, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import logging
import secrets
import time
import typing

import hikari
import orjson
import prometheus_client

from shared import (
    amqp,
    breaker,
    broker,
    clock,
    fleet,
    health,
    keys,
    lifecycle,
    redis_client,
    rpc,
    topology,
)
from shared import interests as shared_interests
from shared import settings as settings_db
from shared import voice as shared_voice
from shared.cache import layout as cache_layout
from shared.cache import reader
from worker import bot as bot_module
from worker import (
    consumer,
    cpu,
    dedupe,
    events,
    frameworks,
    interactions,
    interests,
    metrics,
    queue_depth,
    rest_limits,
    services,
)
from worker.commands import sync as command_sync

if typing.TYPE_CHECKING:
    import aio_pika
    import pymongo

    from shared import config

_LOGGER = logging.getLogger("shardline.worker")
_T = typing.TypeVar("_T")
#: Messages in flight per replica; measured: 10 and up saturate one replica's consume loop.
PREFETCH: typing.Final[int] = 64
DRAIN_TIMEOUT: typing.Final[float] = 30.0
#: Service requests in flight on a leader at once.
SERVICE_PREFETCH: typing.Final[int] = 16
#: How often a replica tells operators (``shardline status``) it is alive, and its counters.
STATUS_INTERVAL: typing.Final[float] = 5.0
#: How long the listeners of ``StoppingEvent``, and then of ``StoppedEvent``, may run while
#: the worker stops (with the drain, within the deploy's 40 s stop grace period).
LIFECYCLE_TIMEOUT: typing.Final[float] = 3.0
#: A read of the gateways' status records that takes longer is abandoned.
GATEWAYS_TIMEOUT: typing.Final[float] = 2.0
_GATEWAYS_FAILURES: typing.Final[tuple[type[BaseException], ...]] = (
    *redis_client.REDIS_ERRORS,
    TimeoutError,
)
#: How long the start waits for the bot's own user (``bot.get_me()``).
ME_TIMEOUT: typing.Final[float] = 5.0


class PluginError(RuntimeError):
    """A module named in WORKER_PLUGINS could not be loaded, or registered nothing."""


Setup = typing.Callable[[bot_module.Bot], object]


def import_plugins(modules: typing.Iterable[str]) -> list[tuple[str, Setup]]:
    """Import each plugin and find its ``setup(bot)`` (before anything connects, so a typo
    fails at once)."""
    found = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise PluginError(f"WORKER_PLUGINS: cannot import {name!r}: {exc}") from exc
        setup = getattr(module, "setup", None)
        if not callable(setup):
            raise PluginError(f"WORKER_PLUGINS: {name!r} has no setup(bot) function")
        found.append((name, typing.cast("Setup", setup)))
    return found


async def setup_plugins(bot: bot_module.Bot, plugins: typing.Iterable[tuple[str, Setup]]) -> None:
    """Call each plugin's ``setup(bot)``, awaited when it is a coroutine function. A plugin
    whose setup registers nothing (no listener, command, service, schedule, fleet answer or
    voice listener) is a mistake, said in one line."""
    for name, setup in plugins:
        before = bot.registrations()
        result = setup(bot)
        if inspect.isawaitable(result):
            await result
        if bot.registrations() == before:
            raise PluginError(
                f"WORKER_PLUGINS: {name!r}: setup(bot) registered nothing (no listener, command,"
                " service, schedule, fleet answer or voice listener)"
            )


async def _fetch_me(rest: hikari.api.RESTClient, *, again: bool = False) -> hikari.OwnUser | None:
    """The bot's own user for ``bot.get_me()``; None (said in the log, at debug level when
    ``again``) when Discord does not answer in time: the worker runs on without it."""
    try:
        return await asyncio.wait_for(rest.fetch_my_user(), ME_TIMEOUT)
    except Exception as exc:  # any failure (Discord, the network, a limiter) leaves it None
        _LOGGER.log(
            logging.DEBUG if again else logging.WARNING,
            "bot.get_me() is None: the bot's user was not fetched",
            extra={"error": repr(exc)},
        )
        return None


class WorkerApp:
    def __init__(self, settings: config.WorkerSettings, bot: bot_module.Bot | None = None) -> None:
        self.settings = settings
        self.bot = bot or bot_module.Bot()
        core = settings.core
        self.worker_id = f"{core.pool}-{settings.group}-{secrets.token_hex(4)}"
        self.topology = topology.Topology(core.namespace, quorum_size=core.quorum_size)
        self.keys = core.redis_keys()
        self.consumer: consumer.EventConsumer | None = None
        self.deduplicator: dedupe.Deduplicator | None = None
        self.health: health.HealthServer | None = None
        self.queue_depths: queue_depth.QueueDepths | None = None
        #: What ``/metrics`` serves: this replica's collector and the process's own metrics.
        #: Which broker node this process uses, and its failovers (``/metrics``).
        self.broker_metrics = amqp.BrokerCollector()
        self.metrics = health.metrics_registry(metrics.WorkerCollector(self))
        self.metrics.register(self.broker_metrics)
        self._amqp: aio_pika.abc.AbstractRobustConnection | None = None
        #: The RPC and services channels' own connection: after a broker restart aio-pika
        #: restores a connection's channels one after another, and the events channel (the
        #: consumers, the interactions' 3 s) must not wait behind them.
        self._control_amqp: aio_pika.abc.AbstractRobustConnection | None = None
        self._redis: redis_client.GuardedRedis | None = None
        self._mongo: pymongo.AsyncMongoClient[dict[str, typing.Any]] | None = None
        self.settings_store: settings_db.SettingsStore | None = None
        self._rest: rest_limits.LimitedRESTClient | None = None
        self.stopping = asyncio.Event()
        self._status_task: asyncio.Task[None] | None = None
        self.endpoint: rpc.Endpoint | None = None
        self.service_host: services.ServiceHost | None = None
        self.scheduler: services.Scheduler | None = None
        self._lavalink: shared_voice.LavalinkRest | None = None
        self.interests: interests.InterestAnnouncer | None = None
        self.redeclaring: broker.Redeclaring | None = None
        self.control_redeclaring: broker.Redeclaring | None = None

    async def start(self) -> None:
        events.check_compatibility()
        rest_limits.check_compatibility()
        core = self.settings.core
        plugins = import_plugins(self.settings.plugins)
        self.bot.cpu = cpu.CpuPool(self.settings.cpu_processes, timeout=self.settings.cpu_timeout)
        # Every call has a deadline and one breaker: while it is open, dedupe and REST limits
        # fall back to this replica's own, at once.
        self._redis = redis_client.connect_guarded(core.redis_url, clock=clock.SystemClock())
        await cache_layout.claim(self._redis, self.keys)
        self._amqp = await broker.connect(core.amqp_urls or (core.amqp_url,), self.stopping)
        self.broker_metrics.connection = self._amqp
        # After a reconnect, what the robust channels leave out of their restore (a node
        # that came back empty): the routes and retry queues here, the services' bindings on
        # the control connection.
        self.redeclaring = broker.Redeclaring(self._amqp)
        self._control_amqp = await broker.connect(core.amqp_urls or (core.amqp_url,), self.stopping)
        self.control_redeclaring = broker.Redeclaring(self._control_amqp)
        channel = await self._declaring("events channel", self._events_channel)
        await self._start_rpc()
        self._rest = rest_limits.build_client(
            token=core.token.reveal(),
            api_url=core.api_url,
            entity_factory=self.bot.entity_factory,
            limiter=self.settings.rest_limiter,
            global_limit=self.settings.rest_global_limit,
            redis=self._redis,
            redis_keys=self.keys,
        )
        self._rest.start()
        # Never fails for MongoDB being away: reads fall back, writes say so, indexes retry.
        self._mongo = settings_db.connect(self.settings.mongo_url.reveal())
        self.settings_store = settings_db.SettingsStore(
            self._mongo.get_default_database(default=core.namespace), self._redis, self.keys
        )
        await self.settings_store.start()
        self.bot.intents = hikari.Intents(self.settings.intents)
        self.bot.attach(
            rest=interactions.InteractionAwareRest(self._rest),
            cache=reader.CacheReader(self._redis, self.keys, self.bot.entity_factory),
            channel=channel,
            pool=core.pool,
            namespace=core.namespace,
            settings=self.settings_store,
            redis=self._redis,
            redis_keys=self.keys,
            default_prefix=self.settings.default_prefix,
        )
        if self.bot.commands.prompts is not None:
            await self.bot.commands.prompts.start()
        if self.settings.lavalink is not None:
            self._lavalink = shared_voice.LavalinkRest(self.settings.lavalink)
            await self._lavalink.start()
            self.bot.voice.attach(self._lavalink, self._redis, self.keys)
        await self.observe_gateways()
        # Plugins are set up once REST, the cache and the settings exist (bot.rest works in
        # setup), and before anything is bound: what they listen to is what the queue binds.
        await setup_plugins(self.bot, plugins)
        # Before StartingEvent: arc and tanjun must not declare commands on every replica.
        frameworks.prepare(
            self.bot.event_manager,
            own_commands=bool(self.bot.commands.commands),
            cache=self.bot.cache,
            me=self.bot.get_me,
        )
        await self.bot.starting(await _fetch_me(self.bot.rest))
        if "services" in self.settings.roles:
            await self._start_services()
        wanted = self.bot.events.listened_gateway_events() + self.bot.voice.listened_events()
        missing = self.bot.events.missing_intents(self.bot.intents)
        if missing:
            _LOGGER.warning(
                "listeners for events INTENTS never delivers (enable one of the intents shown)",
                extra={"missing": missing},
            )
        self.bot.binds(wanted if "events" in self.settings.roles else [])
        if "events" in self.settings.roles:
            queues = await self._start_events(channel, wanted)
        watched = [queue.name for queue in queues] if "events" in self.settings.roles else []
        self.queue_depths = queue_depth.QueueDepths(  # its channel off the events connection
            self._control_amqp, [*watched, self.topology.dead_letter_queue]
        )
        await self.queue_depths.start()
        self.health = health.HealthServer(
            core.health_port, ready=self.readiness, alive=self.liveness, metrics=self.metrics
        )
        await self.health.start()
        self._status_task = asyncio.get_running_loop().create_task(self._status_loop())
        await self.bot.started()
        _LOGGER.info(
            "worker consuming",
            extra={
                "worker": self.worker_id,
                "events": wanted if self.consumer is not None else [],
                "roles": sorted(self.settings.roles),
            },
        )

    async def _close_broker(self) -> None:
        for again in (self.redeclaring, self.control_redeclaring):
            if again is not None:
                await again.close()
        for connection in (self._amqp, self._control_amqp):
            if connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 5)

    async def _start_events(
        self, channel: aio_pika.abc.AbstractChannel, wanted: list[str]
    ) -> tuple[aio_pika.abc.AbstractQueue, ...]:
        """Bind and consume the group's queues: the ``events`` role."""
        assert self._redis is not None
        assert self.redeclaring is not None
        queues = await self._bind(channel, wanted)
        self.deduplicator = dedupe.Deduplicator(self._redis, self.keys, self.worker_id)
        await self.deduplicator.start()
        self.consumer = consumer.EventConsumer(
            self.bot,
            channel,
            self.topology,
            self.deduplicator,
            retry_delays=self.settings.retry_delays,
        )
        # Safe to run again: a queue already consumed is not consumed twice.
        await self._declaring("consumers", lambda: self._consumer_start(queues))
        pool, group = self.settings.core.pool, self.settings.group
        # Retry queues first: a retry published before they exist would be returned.
        self.redeclaring.add("retry queues", self.consumer.declare_retry_queues)
        self.redeclaring.add(
            "worker routes",
            lambda again: self.topology.declare_worker_routes(again, pool, group, wanted),
        )
        await self.redeclaring.watch(channel)
        return queues

    async def _start_rpc(self) -> None:
        """This replica's RPC endpoint: service calls, fleet questions (``stats`` built in)."""
        assert self._control_amqp is not None
        assert self._redis is not None
        amqp = self._control_amqp
        rpc_channel = await self._declaring(
            "rpc channel",
            lambda: amqp.channel(publisher_confirms=True, on_return_raises=True),
            on=amqp,
        )
        self.endpoint = rpc.Endpoint(
            rpc_channel, self.topology, self.settings.core.pool, self.worker_id
        )

        async def stats(_: object) -> dict[str, typing.Any]:
            return self.status()

        self.endpoint.answer("stats", stats)
        self.bot.services.attach(self.endpoint)
        self.bot.fleet.attach(self.endpoint, self._redis, self.keys)
        await self._declaring("rpc queue", self.endpoint.start, on=amqp)

    async def _start_services(self) -> None:
        """Stand for every service's leadership and run the schedules this replica wins."""
        assert self._control_amqp is not None
        assert self._redis is not None
        if self.bot.services.defined:
            amqp = self._control_amqp

            async def service_channel_() -> aio_pika.abc.AbstractChannel:
                opened = await amqp.channel(publisher_confirms=True)
                await opened.set_qos(prefetch_count=SERVICE_PREFETCH)
                return opened

            service_channel = await self._declaring("services channel", service_channel_, on=amqp)
            self.service_host = services.ServiceHost(
                self.bot.services.defined.values(),
                channel=service_channel,
                redis=self._redis,
                keys=self.keys,
                topology=self.topology,
                process_id=self.worker_id,
            )
            await self._declaring("services", self.service_host.start, on=amqp)
            assert self.control_redeclaring is not None
            self.control_redeclaring.add("service routes", self.service_host.declare_routes)
            await self.control_redeclaring.watch(service_channel)
        if self.bot.schedules.defined:
            self.scheduler = services.Scheduler(
                self.bot.schedules.defined.values(),
                redis=self._redis,
                keys=self.keys,
                holder=self.worker_id,
            )
            await self.scheduler.start()

    async def _declaring(
        self,
        what: str,
        step: typing.Callable[[], typing.Awaitable[_T]],
        *,
        on: aio_pika.abc.AbstractRobustConnection | None = None,
    ) -> _T:
        """One broker step of the start (on the events connection unless ``on``), run again
        if the broker is lost under it."""
        connection = on or self._amqp
        assert connection is not None
        return await broker.declaring(connection, self.stopping, what, step)

    async def _events_channel(self) -> aio_pika.abc.AbstractChannel:
        assert self._amqp is not None
        channel = await self._amqp.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        return channel

    async def _consumer_start(self, queues: typing.Iterable[aio_pika.abc.AbstractQueue]) -> None:
        assert self.consumer is not None
        await self.consumer.start(queues)

    async def _bind(
        self, channel: aio_pika.abc.AbstractChannel, wanted: list[str]
    ) -> tuple[aio_pika.abc.AbstractQueue, aio_pika.abc.AbstractQueue]:
        """Bind the group's queues to what its listeners need, announce it to the gateways,
        and unbind what the previous deploy listened to and this one does not."""
        assert self._redis is not None
        core = self.settings.core
        record = self.keys.interests(self.settings.group)
        try:
            previous = {redis_client.text(m) for m in await self._redis.smembers(record)}
        except redis_client.REDIS_ERRORS as exc:
            # Started while Redis is away: what the last deploy bound is unknown, so nothing
            # is unbound (the next start unbinds it); the events flow all the same.
            _LOGGER.warning(
                "Redis unavailable at start: stale bindings kept", extra={"error": repr(exc)}
            )
            previous = set()
        previous.discard(shared_interests.MARKER)
        queues = await self._declaring(
            "queues",
            lambda: self.topology.declare_worker_queues(
                channel, core.pool, self.settings.group, wanted
            ),
        )
        stale = previous - set(wanted)
        if stale:
            await self._declaring(
                "stale bindings",
                lambda: self.topology.unbind_worker_events(
                    channel, core.pool, self.settings.group, stale
                ),
            )
        # Announced before consuming: the gateways learn of it at once (a notification).
        self.interests = interests.InterestAnnouncer(
            self._redis, self.keys, self.settings.group, wanted, clock=clock.SystemClock()
        )
        await self.interests.announce()
        self.interests.start()
        return queues

    def readiness(self) -> str | None:
        if self.health is None:
            return "starting"
        if any(c is None or c.is_closed for c in (self._amqp, self._control_amqp)):
            return "broker connection closed"
        if self.interests is not None and not self.interests.acknowledged:
            return "waiting for the gateways to acknowledge this group's interests"
        return None

    def liveness(self) -> str | None:
        """Alive while its loops run (a broker away is not fatal: the connection reconnects)."""
        if self._status_task is not None and self._status_task.done():
            return "the status loop ended"
        return None

    @property
    def breakers(self) -> dict[str, breaker.CircuitBreaker]:
        """The circuit breakers in front of its dependencies, by name."""
        found = {"redis": self._redis.breaker} if self._redis is not None else {}
        if self.settings_store is not None:
            found["mongodb"] = self.settings_store.breaker
        return found

    @property
    def shared_limiter(self) -> rest_limits.SharedBucketManager | None:
        return self._rest.shared_limiter if self._rest is not None else None

    def render_metrics(self) -> str:
        """What a scrape of ``/metrics`` returns (Prometheus text format)."""
        return prometheus_client.generate_latest(self.metrics).decode()

    def status(self) -> dict[str, typing.Any]:
        """What ``shardline status`` shows of this replica."""
        stats = self.consumer.stats if self.consumer is not None else consumer.ConsumerStats()
        return {
            "worker": self.worker_id,
            "pool": self.settings.core.pool,
            "group": self.settings.group,
            "consumed": stats.consumed,
            "handled": sum(stats.handled.values()),
            "failures": sum(stats.failures.values()),
            "dead_lettered": stats.dead_lettered,
            "duplicates": stats.duplicates,
            "roles": sorted(self.settings.roles),
            "leading": sorted(self.service_host.leading) if self.service_host else [],
            "schedule_runs": self.scheduler.runs if self.scheduler else 0,
            "cpu": dataclasses.asdict(self.bot.cpu.stats),
            "breakers": {name: b.state.value for name, b in self.breakers.items()},
            "at": time.time(),
        }

    async def _status_loop(self) -> None:
        while True:
            await self.write_status()
            await self.observe_gateways()
            if self.bot.get_me() is None:
                self.bot.remember_me(await _fetch_me(self.bot.rest, again=True))
            await asyncio.sleep(STATUS_INTERVAL)

    async def observe_gateways(self) -> None:
        """Tell the bot the pool's shard count and heartbeat latencies, from the gateways'
        status records (two round trips; on a Redis failure, what it knew stays)."""
        assert self._redis is not None
        try:
            statuses = await asyncio.wait_for(
                fleet.gateway_statuses(self._redis, self.keys), GATEWAYS_TIMEOUT
            )
        except _GATEWAYS_FAILURES as exc:
            _LOGGER.debug("gateway statuses not read", extra={"error": repr(exc)})
            return
        self.bot.observe_gateways(statuses)

    async def write_status(self) -> None:
        """Heartbeat and counters for operators (every few seconds)."""
        assert self._redis is not None
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self.keys.workers(), {self.worker_id: now})
                pipe.zremrangebyscore(self.keys.workers(), "-inf", now - keys.HEALTH_TTL)
                pipe.set(
                    self.keys.worker_status(self.worker_id),
                    orjson.dumps(self.status()),
                    ex=keys.HEALTH_TTL,
                )
                await pipe.execute()
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.debug("status not written", extra={"error": str(exc)})

    async def close(self) -> None:
        """Stop intake, let in-flight handlers finish, then disconnect."""
        await self.bot.stopping(LIFECYCLE_TIMEOUT)
        if self._status_task is not None:
            await lifecycle.cancel_and_wait([self._status_task])
            if self._redis is not None:
                with contextlib.suppress(*redis_client.REDIS_ERRORS):
                    await self._redis.zrem(self.keys.workers(), self.worker_id)
        await self._close_services()
        if self.interests is not None:
            await self.interests.close()
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.consumer.stop_intake(), 5)
        # In-flight handlers, and the listeners of events bot code dispatched, side by side.
        await asyncio.gather(
            *([self.consumer.drain(DRAIN_TIMEOUT)] if self.consumer is not None else []),
            self.bot.event_manager.drain(DRAIN_TIMEOUT),
        )
        if self.endpoint is not None:
            await self.endpoint.close()
        await self.bot.stopped(LIFECYCLE_TIMEOUT)
        await self.bot.cpu.close()
        if self._lavalink is not None:
            await self._lavalink.close()
        if self.deduplicator is not None:
            await self.deduplicator.flush_before_close()
            await self.deduplicator.close()
        await self._close_observers()
        if self._rest is not None:
            await self._rest.close()
        await self._close_broker()
        if self.bot.commands.prompts is not None:
            await self.bot.commands.prompts.close()
        if self.settings_store is not None:
            await self.settings_store.close()
        if self._mongo is not None:
            await self._mongo.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def _close_observers(self) -> None:
        if self.health is not None:
            await self.health.close()
        if self.queue_depths is not None:
            await self.queue_depths.close()

    async def _close_services(self) -> None:
        """Give up what this replica leads first, so successors take over during the drain."""
        if self.scheduler is not None:
            await self.scheduler.close()
        if self.service_host is not None:
            await self.service_host.close()

    async def run(self) -> None:
        """Start, consume until SIGTERM, then drain in-flight handlers."""
        await lifecycle.run_until_stopped(
            name="worker",
            start=self.start,
            close=self.close,
            stopping=self.stopping,
            secrets=(
                *self.settings.core.secrets(),
                self.settings.mongo_url,
                self.settings.lavalink.password if self.settings.lavalink else None,
            ),
        )


async def sync_commands(
    settings: config.WorkerSettings, *, dry_run: bool, guild_id: int | None = None
) -> str:
    """What ``python -m worker sync-commands`` does: diff the plugins' commands with Discord's
    and, unless ``dry_run``, overwrite Discord's list with them."""
    bot = bot_module.Bot()
    plugins = import_plugins(settings.plugins)
    core = settings.core
    redis = redis_client.connect(core.redis_url)
    redis_keys = core.redis_keys()
    client = rest_limits.build_client(
        token=core.token.reveal(),
        api_url=core.api_url,
        entity_factory=bot.entity_factory,
        limiter=settings.rest_limiter,
        global_limit=settings.rest_global_limit,
        redis=redis,
        redis_keys=redis_keys,
    )
    client.start()
    try:
        # As at a worker's start, bot.rest and bot.cache work in setup (bot.settings not).
        bot.attach_clients(
            rest=interactions.InteractionAwareRest(client),
            cache=reader.CacheReader(redis, redis_keys, bot.entity_factory),
            redis=redis,
            redis_keys=redis_keys,
        )
        await setup_plugins(bot, plugins)
        application = await client.fetch_application()
        commands = bot.commands.synced()
        extra = frameworks.command_builders(bot.event_manager, guild_id)
        diff = await command_sync.plan(client, application.id, commands, guild_id, extra)
        where = f"guild {guild_id}" if guild_id is not None else "global"
        report = f"application commands ({where}):\n{diff.describe()}"
        if dry_run or diff.empty:
            return report + ("\n(dry run: nothing changed)" if dry_run else "")
        await command_sync.apply(client, application.id, commands, guild_id, extra)
        return report + "\napplied"
    finally:
        await client.close()
        await redis.aclose()
