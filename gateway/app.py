"""One gateway process of a pool: wiring and lifecycle only.

The parts, each in a module named for what it holds: ``shards`` (hikari's shards, raw
dispatches in), ``publisher`` (envelopes out, confirmed), ``holder`` (a shard with its
command route), ``assignment`` (lease-mode fair shares), ``reshard`` (following a re-shard),
``restarts`` (operator-requested shard restarts), ``checkpoints`` (confirmed seqs for
successors), ``status`` (what peers and operators read), ``interests`` (selective
forwarding), ``gateway_commands`` (commands from workers), ``voice`` (Lavalink sessions).

Every part started is closed by construction, in reverse order, through one exit stack; a
failing step of the close never skips the others. Background loops belong to one
``shared.lifecycle.TaskGroup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import typing

import prometheus_client

from gateway import (
    assignment,
    checkpoints,
    discord_api,
    gateway_commands,
    hikari_adapter,
    holder,
    identify,
    interests,
    leases,
    metrics,
    publisher,
    repair,
    reshard,
    restarts,
    sessions,
    shards,
    voice,
    voice_switch,
)
from gateway import status as gateway_status
from shared import amqp, breaker, clock, health, lifecycle, redis_client, rpc, topology
from shared import broker as broker_connect
from shared import status as shared_status
from shared.cache import layout as cache_layout
from shared.cache import resources
from shared.cache import writer as cache_writer

if typing.TYPE_CHECKING:
    import aio_pika
    import redis.asyncio as aioredis

    from shared import config

_LOGGER = logging.getLogger("shardline.gateway")


class GatewayApp:
    def __init__(self, settings: config.GatewaySettings) -> None:
        self.settings = settings
        core = settings.core
        self.gateway_id = f"{core.pool}-{secrets.token_hex(4)}"
        self.topology = topology.Topology(core.namespace, quorum_size=core.quorum_size)
        self.keys = core.redis_keys()
        self.stopping = asyncio.Event()
        #: What ``/metrics`` serves: this gateway's collector and the process's own metrics.
        #: Which broker node this process uses, and its failovers (``/metrics``).
        self.broker_metrics = amqp.BrokerCollector()
        self.metrics = health.metrics_registry(metrics.GatewayCollector(self))
        self.metrics.register(self.broker_metrics)
        # Set by start(); read by tests, metrics and the status.
        self.group: shards.ShardGroup | None = None
        self.publisher: publisher.EventPublisher | None = None
        self.commands: gateway_commands.CommandConsumer | None = None
        self.leases: leases.ShardLeases | None = None
        self.health: health.HealthServer | None = None
        self.ledger: identify.SessionStartLedger | None = None
        self.endpoint: rpc.Endpoint | None = None
        self._voice: voice_switch.VoiceSwitch | None = None
        self._redis: redis_client.GuardedRedis | None = None
        self._checkpoints: checkpoints.CheckpointWriter | None = None
        self._reshard: reshard.ReshardFollower | None = None
        self.interests: interests.InterestView | None = None
        #: Guilds whose cache writes a Redis outage skipped, re-fetched once it is back.
        self.repair: repair.CacheRepair | None = None
        self._tasks = lifecycle.TaskGroup(_LOGGER)
        self._restart_requests = restarts.RestartRequests(settings.admin_key, self.keys.prefix)
        self._stack = contextlib.AsyncExitStack()
        #: True from the start of close(): its status says so, and peers stop counting it.
        self._closing = False

    # --- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        hikari_adapter.check_compatibility()
        core, stack = self.settings.core, self._stack
        info = await discord_api.fetch_gateway_bot(core.api_url, core.token)
        shard_count = self.settings.shard_count or info.shards
        # Every call has a deadline and one breaker: a hung Redis never holds a publish.
        redis = self._redis = redis_client.connect_guarded(
            core.redis_url, clock=clock.SystemClock()
        )
        stack.push_async_callback(redis.aclose)
        await cache_layout.claim(redis, self.keys)
        urls = core.amqp_urls or (core.amqp_url,)
        broker = await broker_connect.connect(urls, self.stopping)
        self.broker_metrics.connection = broker
        stack.push_async_callback(_bounded, broker.close)
        # The command and RPC channels' own connection: after a broker restart aio-pika
        # restores a connection's channels one after another, and publishing must not wait
        # behind the command channel's bindings (one per held shard).
        control = await broker_connect.connect(urls, self.stopping)
        stack.push_async_callback(_bounded, control.close)

        channel, events_exchange, command_channel, reply_queue = await self._declare(
            broker, control
        )
        await self._start_health()
        self.ledger = await self._start_ledger(redis, info)
        # Where an event too large for any worker is parked (as a stub), never retried.
        dead_letter = await channel.get_exchange(self.topology.dead_letter_exchange, ensure=False)
        events = self.publisher = self._publisher(events_exchange, redis, shard_count, dead_letter)
        store = sessions.SessionStore(redis, self.keys)
        writer = self._checkpoints = checkpoints.CheckpointWriter(events, store)
        stack.push_async_callback(writer.finish)
        group = self.group = shards.ShardGroup(
            shards.ShardSettings(
                token=core.token.reveal(),
                gateway_url=info.url,
                intents=self.settings.intents,
                shard_count=shard_count,
                max_concurrency=info.max_concurrency,
            ),
            event_publisher=events,
            session_store=store,
            identify_queue=identify.RedisIdentifyQueue(redis, self.keys),
            ledger=self.ledger,
        )
        self.endpoint = await self._start_rpc(control)
        stack.push_async_callback(self.endpoint.close)
        follower = self._reshard = reshard.ReshardFollower(
            redis,
            self.keys,
            admin_key=self.settings.admin_key,
            standby=self.settings.standby,
            shards=holder.ShardHolder(
                group,
                names=self.topology,
                pool=core.pool,
                reply_queue=reply_queue,
                standby=lambda: follower.standby,
            ),
            events=events,
            tasks=self._tasks,
            write_status=self.write_status,
        )
        view = await self._start_interests(redis, events)
        await follower.settle_at_start()
        stack.push_async_callback(follower.hand_over)
        self.commands = gateway_commands.CommandConsumer(
            reply_queue,
            command_channel,
            group,
            self.gateway_id,
            intents=self.settings.intents,
            names=self.topology,
        )
        await broker_connect.declaring(
            control, self.stopping, "command consumer", self.commands.start
        )
        stack.push_async_callback(_bounded, self.commands.close)
        if self.settings.lavalink is not None:
            switch = self._voice = voice_switch.VoiceSwitch(
                self.settings.lavalink,
                redis=redis,
                keys=self.keys,
                events=events,
                gateway_id=self.gateway_id,
                group=group,
                user_id=lambda: discord_api.fetch_bot_user_id(core.api_url, core.token),
                announce=self.write_status,
            )
            stack.push_async_callback(switch.stop)
            follower.start_voice, follower.stop_voice = switch.start, switch.stop
            if follower.publishes:
                await switch.start()
        stack.push_async_callback(self._stop_loops)
        self._say_started(shard_count)
        view.on_applied = self.write_status  # each change acknowledged at once
        self._start_loops(writer)
        follower.start_loop()
        if follower.retired:
            return
        if self.settings.shard_ids is not None:
            await asyncio.gather(*(follower.shards.start(s) for s in self.settings.shard_ids))
            return
        self.leases = leases.ShardLeases(
            redis,
            self.keys,
            self.gateway_id,
            self.settings.lease_ttl,
            shard_count=shard_count,
            admin_key=self.settings.admin_key,
        )
        follower.assignment = await assignment.start(self.leases, follower.shards, self._tasks)

    async def _start_health(self) -> None:
        self.health = health.HealthServer(
            self.settings.core.health_port,
            ready=self.readiness,
            alive=self.liveness,
            metrics=self.metrics,
        )
        await self.health.start()
        self._stack.push_async_callback(self.health.close)

    async def _start_ledger(
        self, redis: aioredis.Redis, info: discord_api.GatewayBotInfo
    ) -> identify.SessionStartLedger:
        core = self.settings.core
        ledger = identify.SessionStartLedger(
            redis, self.keys, fetch=lambda: discord_api.fetch_gateway_bot(core.api_url, core.token)
        )
        await ledger.record_limit(info.total, info.remaining, info.reset_after)
        return ledger

    async def _start_interests(
        self, redis: aioredis.Redis, events: publisher.EventPublisher
    ) -> interests.InterestView:
        view = self.interests = interests.InterestView(
            redis, self.keys, events, clock=clock.SystemClock()
        )
        view.start(self._tasks)  # unknown (publish everything) until it has read them
        await view.settled(interests.START_WAIT)
        return view

    def _start_loops(self, writer: checkpoints.CheckpointWriter) -> None:
        self._tasks.every(checkpoints.INTERVAL, writer.write, name="checkpoints")
        self._tasks.every(
            shared_status.STATUS_INTERVAL, self._status_round, name="status", first_now=True
        )
        if self.ledger is not None:
            self._tasks.every(
                identify.LEDGER_CHECK_INTERVAL, self.ledger.refresh_if_due, name="session-starts"
            )
        if self.repair is not None:
            self._tasks.every(repair.INTERVAL, self.repair.run_once, name="cache repair")

    def _publisher(
        self,
        exchange: aio_pika.abc.AbstractExchange,
        redis: redis_client.GuardedRedis,
        shard_count: int,
        dead_letter: aio_pika.abc.AbstractExchange | None = None,
    ) -> publisher.EventPublisher:
        core = self.settings.core
        cached = self.settings.cache_resources
        writer = (
            cache_writer.CacheWriter(
                self.keys, resources.CacheResource(cached), shard_count=shard_count
            )
            if cached
            else None
        )
        if writer is not None:
            self.repair = repair.CacheRepair.over_rest(
                writer, redis, core.api_url, core.token, breaker=redis.breaker
            )
        return publisher.EventPublisher(
            exchange,
            pool=core.pool,
            gateway_id=self.gateway_id,
            reply_to=self.topology.reply_queue(core.pool, self.gateway_id),
            max_buffered=self.settings.publish_buffer,
            on_pressure=lambda on: self.group.set_paused(on) if self.group else None,
            cache_writer=writer,
            redis=redis,
            dead_letter=dead_letter,
            breaker=redis.breaker,
            on_cache_skipped=self.repair.mark if self.repair is not None else None,
        )

    def _say_started(self, shard_count: int) -> None:
        where = {"gateway": self.gateway_id, "pool": self.settings.core.pool}
        _LOGGER.info("gateway starting", extra={**where, "shard_count": shard_count})
        if self.settings.admin_key is None:
            _LOGGER.warning(
                "ADMIN_KEY is not set: this gateway refuses every drain, shard restart and "
                "re-shard step (set it to the key shardline signs with)"
            )

    async def _start_rpc(self, broker: aio_pika.abc.AbstractRobustConnection) -> rpc.Endpoint:
        """Answer fleet questions (``stats``: what ``shardline status`` shows of this gateway)."""
        declaring = functools.partial(broker_connect.declaring, broker, self.stopping)
        channel = await declaring(
            "rpc channel", lambda: broker.channel(publisher_confirms=True, on_return_raises=True)
        )
        endpoint = rpc.Endpoint(channel, self.topology, self.settings.core.pool, self.gateway_id)

        async def stats(_: object) -> dict[str, typing.Any]:
            return self.status().to_dict()

        endpoint.answer("stats", stats)
        await declaring("rpc queue", endpoint.start)
        return endpoint

    # --- what runs ----------------------------------------------------------------------------

    @property
    def standby(self) -> bool:
        """A re-shard's new layout, publishing nothing until the switch."""
        return self._reshard.standby if self._reshard is not None else self.settings.standby

    @property
    def retired(self) -> bool:
        """A re-shard's old layout after the switch: holds no shard."""
        return self._reshard is not None and self._reshard.retired

    @property
    def voice(self) -> voice.VoiceBridge | None:
        """The Lavalink bridge, while this layout publishes and ``LAVALINK_URL`` is set."""
        return self._voice.bridge if self._voice is not None else None

    async def _declare(
        self,
        broker: aio_pika.abc.AbstractRobustConnection,
        control: aio_pika.abc.AbstractRobustConnection,
    ) -> tuple[
        aio_pika.abc.AbstractChannel,
        aio_pika.abc.AbstractExchange,
        aio_pika.abc.AbstractChannel,
        aio_pika.abc.AbstractQueue,
    ]:
        """The events channel and exchanges (on ``broker``), the command channel and this
        gateway's queue (on ``control``). Each step again if the broker is lost under it,
        once the connection is back."""
        declaring = functools.partial(broker_connect.declaring, broker, self.stopping)
        channel = await declaring("events channel", lambda: broker.channel(publisher_confirms=True))
        events_exchange, _ = await declaring(
            "exchanges", lambda: self.topology.declare_exchanges(channel)
        )
        # A node that came back empty: the exchanges again (the restore leaves them out).
        again = broker_connect.Redeclaring(broker)
        self._stack.push_async_callback(again.close)
        again.add("exchanges", self.topology.declare_exchanges)
        declaring = functools.partial(broker_connect.declaring, control, self.stopping)
        command_channel = await declaring("command channel", control.channel)
        await declaring("command qos", lambda: command_channel.set_qos(prefetch_count=256))
        reply_queue = await declaring(
            "reply queue",
            lambda: self.topology.declare_reply_queue(
                command_channel, self.settings.core.pool, self.gateway_id
            ),
        )
        return channel, events_exchange, command_channel, reply_queue

    @property
    def breakers(self) -> dict[str, breaker.CircuitBreaker]:
        """The circuit breakers in front of its dependencies, by name."""
        return {"redis": self._redis.breaker} if self._redis is not None else {}

    @property
    def redis_up(self) -> bool:
        return self._checkpoints is None or self._checkpoints.redis_up

    def status(self) -> shared_status.GatewayStatus:
        """What ``shardline status``, the peers and the workers read of this gateway."""
        described = gateway_status.describe(
            self.gateway_id,
            self.settings.core.pool,
            self.group,
            leased=self.leases,
            standby=self.standby,
            retired=self.retired,
            stopping=self._closing,
            backlog=self.publisher.outstanding if self.publisher is not None else 0,
            bridge=self.voice,
            interests=self.interests.acknowledged if self.interests is not None else None,
            session_start_wait_until=self.ledger.waiting_until() if self.ledger else None,
        )
        return dataclasses.replace(
            described, breakers={name: b.state.value for name, b in self.breakers.items()}
        )

    async def write_status(self) -> None:
        if self._redis is not None:
            await gateway_status.write(self._redis, self.keys, self.status())

    async def _status_round(self) -> None:
        try:
            await self.restart_requested_shards()
        finally:  # a failed restart must not also stop the status
            await self.write_status()

    async def restart_requested_shards(self) -> list[int]:
        """Restart the held shards an operator asked for (``shardline restart-shard``)."""
        follower = self._reshard
        if self._redis is None or follower is None or follower.standby or follower.retired:
            return []  # a re-shard's other layout: the request is for the serving one
        return await restarts.take_requested(
            self._redis, self.keys, self._restart_requests, follower.shards
        )

    # --- health -------------------------------------------------------------------------------

    def readiness(self) -> str | None:
        if self.group is None:
            return "starting"
        down = [s for s, st in self.group.stats.items() if not st.connected]
        return f"shards not connected: {down}" if down else None

    def liveness(self) -> str | None:
        """Alive while its loops run and every held shard is connected or on its way: queued
        for an IDENTIFY however long the pool's queue is, or reconnecting within hikari's
        back-off. A cold start of many shards is live long before it is ready."""
        if ended := self._tasks.ended:
            return f"background loops ended: {', '.join(ended)}"
        return self.group.stall_report() if self.group is not None else None

    def render_metrics(self) -> str:
        """What a scrape of ``/metrics`` returns (Prometheus text format)."""
        return prometheus_client.generate_latest(self.metrics).decode()

    # --- stop (each step pushed on the exit stack by start, run in reverse) -----------------

    async def close(self) -> None:
        """Stop intake, hand every shard over with its session kept, then disconnect."""
        try:
            await self._stack.aclose()  # in reverse order of start, each step whatever the others
        finally:
            await self._tasks.close()

    async def _stop_loops(self) -> None:
        await self._tasks.stop_loops()
        # Peers and operators see it stopping at once, not when its status goes stale
        # (a re-shard record retires a layout only while its replacement publishes).
        self._closing = True
        await self.write_status()
        await self._tasks.wait_work(timeout=30)  # shards claimed a moment ago, still starting

    async def run(self) -> None:
        """Start, hold the shards until SIGTERM, then hand them off."""
        await lifecycle.run_until_stopped(
            name="gateway",
            start=self.start,
            close=self.close,
            stopping=self.stopping,
            secrets=(
                *self.settings.core.secrets(),
                self.settings.lavalink.password if self.settings.lavalink else None,
                self.settings.admin_key,
            ),
        )


async def _bounded(step: typing.Callable[[], typing.Awaitable[object]]) -> None:
    """A broker that is away must not hold a shutdown hostage."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(step(), holder.BROKER_STEP_TIMEOUT)
