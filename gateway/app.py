"""One gateway process of a pool: wires shards, publisher, commands, leases and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import typing

import aio_pika
import orjson
import prometheus_client

from gateway import (
    discord_api,
    gateway_commands,
    hikari_adapter,
    identify,
    leases,
    metrics,
    publisher,
    restarts,
    sessions,
    shards,
    voice,
)
from shared import admin, fleet, health, keys, lifecycle, redis_client, reshard, rpc, topology
from shared.cache import resources
from shared.cache import writer as cache_writer

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import config

_LOGGER = logging.getLogger("shardline.gateway")
#: How often confirmed seqs are written to Redis (a kill -9 replays at most this much more).
CHECKPOINT_INTERVAL: typing.Final[float] = 0.25
#: A broker that is away must not hold a shutdown hostage: each broker step waits this long.
BROKER_CLOSE_TIMEOUT: typing.Final[float] = 5.0
#: How often the set of events worker groups listen to is re-read.
INTEREST_INTERVAL: typing.Final[float] = 2.0
#: How often a gateway tells operators (``shardline status``) how its shards are.
STATUS_INTERVAL: typing.Final[float] = 5.0
#: How often a gateway looks at the pool's re-shard record (the overlap lasts about this long).
RESHARD_INTERVAL: typing.Final[float] = 0.5


class GatewayApp:
    def __init__(self, settings: config.GatewaySettings) -> None:
        self.settings = settings
        core = settings.core
        self.gateway_id = f"{core.pool}-{secrets.token_hex(4)}"
        self.topology = topology.Topology(core.namespace)
        self.keys = keys.RedisKeys(core.namespace, core.pool)
        self.redis_up = True
        self.group: shards.ShardGroup | None = None
        self.publisher: publisher.EventPublisher | None = None
        self.commands: gateway_commands.CommandConsumer | None = None
        self.leases: leases.ShardLeases | None = None
        self.health: health.HealthServer | None = None
        self.ledger: identify.SessionStartLedger | None = None
        #: What ``/metrics`` serves: this gateway's collector and the process's own metrics.
        self.metrics = health.metrics_registry(metrics.GatewayCollector(self))
        self.endpoint: rpc.Endpoint | None = None
        self.voice: voice.VoiceBridge | None = None
        self._amqp: aio_pika.abc.AbstractRobustConnection | None = None
        self._redis: aioredis.Redis | None = None
        self._reply_queue: aio_pika.abc.AbstractQueue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._written: dict[int, sessions.Checkpoint] = {}
        self._claimed: set[int] = set()
        self._spawned: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        #: A re-shard's new layout, publishing nothing until the switch (``GATEWAY_STANDBY``).
        self.standby = settings.standby
        #: A re-shard's old layout after the switch (or an aborted standby): holds no shard.
        self.retired = False
        self._restarts = restarts.RestartRequests(settings.admin_key, self.keys.prefix)
        #: When the newest re-shard step this gateway followed was signed.
        self._reshard_at = 0.0
        self._reshard_refused: str | None = None
        self._successor_missing = False
        self._started_at = time.time()
        #: True from the start of close(): its status says so, and peers stop counting it.
        self._closing = False

    # --- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        hikari_adapter.check_compatibility()
        core = self.settings.core
        info = await discord_api.fetch_gateway_bot(core.api_url, core.token)
        shard_count = self.settings.shard_count or info.shards
        self._redis = redis_client.connect(core.redis_url)
        self._amqp = await aio_pika.connect_robust(core.amqp_url.reveal())
        channel = await self._amqp.channel(publisher_confirms=True)
        events_exchange, _ = await self.topology.declare_exchanges(channel)
        command_channel = await self._amqp.channel()
        await command_channel.set_qos(prefetch_count=256)
        self._reply_queue = await self.topology.declare_reply_queue(
            command_channel, core.pool, self.gateway_id
        )
        self.ledger = ledger = identify.SessionStartLedger(self._redis, self.keys)
        await ledger.record_limit(info.total, info.remaining, info.reset_after)
        self.publisher = publisher.EventPublisher(
            events_exchange,
            pool=core.pool,
            gateway_id=self.gateway_id,
            reply_to=self.topology.reply_queue(core.pool, self.gateway_id),
            max_buffered=self.settings.publish_buffer,
            on_pressure=self._on_pressure,
            cache_writer=cache_writer.CacheWriter(
                self.keys, resources.CacheResource(self.settings.cache_resources)
            )
            if self.settings.cache_resources
            else None,
            redis=self._redis,
        )
        self.publisher.muted = self.standby
        await self._refresh_interests()
        self.group = shards.ShardGroup(
            shards.ShardSettings(
                token=core.token.reveal(),
                gateway_url=info.url,
                intents=self.settings.intents,
                shard_count=shard_count,
                max_concurrency=info.max_concurrency,
            ),
            event_publisher=self.publisher,
            session_store=sessions.SessionStore(self._redis, self.keys),
            identify_queue=identify.RedisIdentifyQueue(self._redis, self.keys),
            ledger=ledger,
        )
        self.commands = gateway_commands.CommandConsumer(
            self._reply_queue, command_channel, self.group, self.gateway_id
        )
        await self.commands.start()
        await self._start_rpc()
        record = await self._reshard_record()
        if (
            record is not None
            and record.retires(shard_count, standby=self.standby)
            and await self._successor_serves(record, shard_count, starting=True)
        ):
            self.retired = True
            _LOGGER.warning(
                "this pool was re-sharded: this gateway takes no shard (remove it, or run it "
                "with the new SHARD_COUNT)",
                extra={"shard_count": shard_count, "pool_shard_count": record.target},
            )
        elif self.standby and record is not None and record.publishes(shard_count, standby=True):
            self.standby = self.publisher.muted = False  # started after the switch
        elif self.standby and await self._layout_serves(shard_count):
            self.retired = True
            _LOGGER.error(
                "GATEWAY_STANDBY with the SHARD_COUNT the pool already serves: this gateway "
                "takes no shard (a standby gateway runs the re-shard's new count)",
                extra={"shard_count": shard_count},
            )
        if self.settings.lavalink is not None and not self.standby and not self.retired:
            await self._start_voice()
        self.health = health.HealthServer(
            core.health_port, ready=self.readiness, alive=self.liveness, metrics=self.metrics
        )
        await self.health.start()
        _LOGGER.info(
            "gateway starting",
            extra={"gateway": self.gateway_id, "pool": core.pool, "shard_count": shard_count},
        )
        if self.settings.admin_key is None:
            _LOGGER.warning(
                "ADMIN_KEY is not set: this gateway refuses every drain, shard restart and "
                "re-shard step (set it to the key shardline signs with)"
            )
        self._tasks = [
            asyncio.create_task(self._checkpoint_loop(), name="checkpoints"),
            asyncio.create_task(self._interest_loop(), name="interests"),
            asyncio.create_task(self._status_loop(), name="status"),
            asyncio.create_task(self._reshard_loop(), name="reshard"),
        ]
        if self.retired:
            return
        if self.settings.shard_ids is not None:
            await asyncio.gather(*(self._start_shard(s) for s in self.settings.shard_ids))
        else:
            self.leases = leases.ShardLeases(
                self._redis,
                self.keys,
                self.gateway_id,
                self.settings.lease_ttl,
                shard_count=shard_count,
                admin_key=self.settings.admin_key,
            )
            await self._rebalance()
            self._tasks.append(asyncio.create_task(self._lease_loop(), name="leases"))

    async def _start_voice(self) -> None:
        assert self.group is not None
        assert self._redis is not None
        assert self.publisher is not None
        assert self.settings.lavalink is not None
        core = self.settings.core
        self.voice = voice.VoiceBridge(
            self.settings.lavalink,
            redis=self._redis,
            keys=self.keys,
            publisher=self.publisher,
            gateway_id=self.gateway_id,
            user_id=await discord_api.fetch_bot_user_id(core.api_url, core.token),
            shard_count=lambda: self.group.shard_count if self.group is not None else 1,
        )
        self.group.on_dispatch = self.voice.on_dispatch
        # Visible as alive before its Lavalink sessions are listed: other gateways adopt
        # the sessions of gateways without a status.
        await self.write_status()
        await self.voice.start()

    # --- re-sharding ------------------------------------------------------------------------

    async def _reshard_record(self) -> reshard.Reshard | None:
        """The re-shard record, if the operator's key vouches for it and it is not older than
        one this gateway already followed (a replayed earlier step)."""
        assert self._redis is not None
        try:
            record = await reshard.load(self._redis, self.keys, self.settings.admin_key)
            if record is not None and record.at < self._reshard_at:
                raise admin.ActionRefusedError("older than a step already followed")  # noqa: TRY301
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.debug("re-shard record not read", extra={"error": str(exc)})
            return None
        except admin.ActionRefusedError as exc:
            if str(exc) != self._reshard_refused:  # one line per reason, not one per round
                self._reshard_refused = str(exc)
                _LOGGER.warning("re-shard record refused", extra={"reason": str(exc)})
            return None
        if record is not None:
            self._reshard_at = record.at
        return record

    async def _successor_serves(
        self, record: reshard.Reshard, shard_count: int, *, starting: bool = False
    ) -> bool:
        """Whether this gateway may retire by ``record``: a standby one always (it publishes
        nothing), a publishing one only while gateways of the layout that stays publish (the
        new one; the old one when the re-shard was aborted).
        A record left from an earlier re-shard, or one whose new layout was removed since,
        must not leave the pool without gateways: this one keeps serving and says so (once),
        and retires by itself when that layout comes up. ``starting``: only statuses written
        since this gateway started count (a gateway that just died leaves a fresh one behind),
        waited for up to one status interval."""
        successor = record.source if record.state is reshard.State.ABORTED else record.target
        if self.standby:
            return True
        since = self._started_at if starting else 0.0
        deadline = time.monotonic() + (STATUS_INTERVAL + 1.0 if starting else 0.0)
        while not await self._layout_serves(successor, since=since, connected=True):
            if time.monotonic() >= deadline:
                if not self._successor_missing:
                    self._successor_missing = True
                    _LOGGER.error(
                        "the re-shard record retires this layout, but no gateway of the layout "
                        "that replaces it publishes: serving on (start that layout; a finished "
                        "record can be removed with shardline reshard --forget)",
                        extra={"shard_count": shard_count, "successor_shard_count": successor},
                    )
                return False
            await asyncio.sleep(0.25)
        self._successor_missing = False
        return True

    async def _layout_serves(
        self, shard_count: int, *, since: float = 0.0, connected: bool = False
    ) -> bool:
        """Whether gateways that publish (and are not stopping) run ``shard_count`` shards,
        by statuses written in the last three intervals and not before ``since``; with
        ``connected``, only gateways with a shard connected count."""
        assert self._redis is not None
        now = time.time()
        for status in await fleet.gateway_statuses(self._redis, self.keys):
            at = status.get("at", 0)
            if (
                status.get("shard_count") == shard_count
                and not status.get("standby")
                and not status.get("retired")
                and not status.get("stopping")
                and now - at <= 3 * STATUS_INTERVAL
                and at >= since
                and (not connected or _any_connected(status))
            ):
                return True
        return False

    async def _reshard_loop(self) -> None:
        while True:
            await asyncio.sleep(RESHARD_INTERVAL)
            try:
                await self._reshard_round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retried next round; every step is idempotent
                _LOGGER.warning("re-shard round failed", extra={"error": repr(exc)})

    async def _reshard_round(self) -> None:
        record = await self._reshard_record()
        if record is None or self.group is None:
            return
        count = self.group.shard_count
        if self.retired:
            revived = record.state is reshard.State.WARMING and record.target == count
            if revived and self.settings.standby and self.leases is not None:
                await self._revive()
            return
        if self.standby and record.publishes(count, standby=True):
            await self._go_live()
        elif record.retires(count, standby=self.standby) and await self._successor_serves(
            record, count
        ):
            await self._retire()

    async def _go_live(self) -> None:
        """The re-shard switched: this standby gateway's shards publish and take commands."""
        assert self.publisher is not None
        assert self.group is not None
        assert self._reply_queue is not None
        for shard_id in list(self.group.shards):
            await self.topology.bind_shard(self._reply_queue, self.settings.core.pool, shard_id)
        self.publisher.muted = False
        self.standby = False
        _LOGGER.info("re-shard: publishing", extra={"shard_count": self.group.shard_count})
        await self.write_status()
        if self.settings.lavalink is not None:
            await self._start_voice()

    async def _revive(self) -> None:
        """A standby gateway retired by an aborted re-shard, and a new one to its count."""
        assert self.leases is not None
        assert self.publisher is not None
        self.standby = self.publisher.muted = True
        self.retired = False
        _LOGGER.info("re-shard: standing by again", extra={"shard_count": self.leases.shard_count})
        await self._rebalance()
        self._tasks.append(asyncio.create_task(self._lease_loop(), name="leases"))
        await self.write_status()

    async def _retire(self) -> None:
        """The re-shard moved on without this layout: close every shard for good."""
        assert self.group is not None
        assert self._redis is not None
        count = self.group.shard_count
        lease_loop = [t for t in self._tasks if t.get_name() == "leases"]
        await lifecycle.cancel_and_wait(lease_loop)
        self._tasks = [t for t in self._tasks if t not in lease_loop]
        if self._spawned:  # shards claimed a moment ago and still starting
            await asyncio.wait(set(self._spawned), timeout=30)
        if self.voice is not None:  # its Lavalink sessions stay resumable for the new layout
            self.group.on_dispatch = None
            await self.voice.close()
            self.voice = None
        store = sessions.SessionStore(self._redis, self.keys)
        held = list(self.group.shards)
        for shard_id in held:
            try:
                await self._stop_shard(shard_id)
            except Exception as exc:  # closed regardless; only its last checkpoint is missing
                _LOGGER.warning(
                    "re-shard: shard closed without its checkpoint",
                    extra={"shard": shard_id, "error": repr(exc)},
                )
            with contextlib.suppress(*redis_client.REDIS_ERRORS):
                await store.forget(shard_id, count)
                if self.leases is not None:
                    await self.leases.release(shard_id)
        self._claimed.clear()
        if self.leases is not None:
            with contextlib.suppress(*redis_client.REDIS_ERRORS):
                await self.leases.leave()
        self.retired = True
        _LOGGER.info("re-shard: this layout retired", extra={"shard_count": count, "shards": held})
        await self.write_status()

    async def _start_shard(self, shard_id: int) -> None:
        assert self.group is not None
        assert self._reply_queue is not None
        standby = self.standby
        if not standby:  # a standby gateway takes gateway commands once it publishes
            await self.topology.bind_shard(self._reply_queue, self.settings.core.pool, shard_id)
        await self.group.start_shard(shard_id)
        if standby and not self.standby:  # it went live while this shard started
            await self.topology.bind_shard(self._reply_queue, self.settings.core.pool, shard_id)

    async def _stop_shard(self, shard_id: int) -> None:
        assert self.group is not None
        assert self._reply_queue is not None
        await self.group.stop_shard(shard_id)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.topology.unbind_shard(self._reply_queue, self.settings.core.pool, shard_id),
                BROKER_CLOSE_TIMEOUT,
            )

    # --- background loops -------------------------------------------------------------------

    def _on_pressure(self, on: bool) -> None:
        if self.group is not None:
            self.group.set_paused(on)

    async def _write_checkpoints(self) -> None:
        assert self.publisher is not None
        assert self.group is not None
        marks = self.publisher.checkpoints()
        changed = {s: m for s, m in marks.items() if self._written.get(s) != m}
        if not changed:
            return
        store = sessions.SessionStore(typing.cast("aioredis.Redis", self._redis), self.keys)
        try:
            await store.checkpoint(changed)
        except redis_client.REDIS_ERRORS as exc:
            if self.redis_up:
                _LOGGER.warning(
                    "Redis unavailable: checkpoints not saved", extra={"error": str(exc)}
                )
            self.redis_up = False
            return
        if not self.redis_up:
            _LOGGER.info("Redis available again")
        self.redis_up = True
        self._written.update(changed)

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            await self._write_checkpoints()

    async def _refresh_interests(self) -> None:
        assert self._redis is not None
        assert self.publisher is not None
        try:
            groups = await self._redis.smembers(self.keys.interest_groups())
            names: set[str] = set()
            if groups:
                members = await self._redis.sunion(
                    [
                        self.keys.interests(g.decode() if isinstance(g, bytes) else str(g))
                        for g in groups
                    ]
                )
                names = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: keeping the known interests", extra={"error": str(exc)}
            )
            return
        self.publisher.interests = frozenset(names)

    def status(self) -> dict[str, typing.Any]:
        """What ``shardline status`` shows of this gateway."""
        shards: dict[str, typing.Any] = {}
        if self.group is not None:
            for shard_id, stats in sorted(self.group.stats.items()):
                latency = metrics.shard_latency(self.group, shard_id)
                shards[str(shard_id)] = {
                    "connected": stats.connected,
                    "latency": None if latency != latency else round(latency, 4),  # noqa: PLR0124 - NaN
                    "identifies": stats.identifies,
                    "resumes": stats.resumes,
                    "events": stats.events,
                }
        return {
            "gateway": self.gateway_id,
            "pool": self.settings.core.pool,
            "shard_count": self.group.shard_count if self.group is not None else None,
            "leased": self.leases is not None,
            "standby": self.standby,
            "retired": self.retired,
            "stopping": self._closing,
            "draining": bool(self.leases is not None and self.leases.draining),
            "backlog": self.publisher.outstanding if self.publisher is not None else 0,
            "at": time.time(),
            "shards": shards,
            "lavalink": (
                {"sessions": len(self.voice.sessions), **self.voice.stats} if self.voice else None
            ),
        }

    async def write_status(self) -> None:
        assert self._redis is not None
        now = time.time()
        index = self.keys.gateway_index()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(
                    self.keys.gateway_status(self.gateway_id),
                    orjson.dumps(self.status()),
                    ex=keys.HEALTH_TTL,
                )
                pipe.zadd(index, {self.gateway_id: now})
                pipe.zremrangebyscore(index, "-inf", now - 2 * keys.HEALTH_TTL)
                await pipe.execute()
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.debug("status not written", extra={"error": str(exc)})

    async def _status_loop(self) -> None:
        while True:
            await self.restart_requested_shards()
            await self.write_status()
            await asyncio.sleep(STATUS_INTERVAL)

    async def restart_requested_shards(self) -> list[int]:
        """Restart the held shards an operator asked for (``shardline restart-shard``): the
        socket is closed with its session kept, and the shard RESUMEs."""
        if self._redis is None or self.group is None or self.standby or self.retired:
            return []  # a re-shard's other layout: the request is for the serving one
        key = self.keys.restart_requests()
        try:
            asked = await self._redis.hgetall(key)
            mine = {
                int(s): token
                for s, token in asked.items()
                if s.isdigit() and int(s) in self.group.shards
            }
            # HDEL answers 1 to one gateway only: a shard is restarted once.
            taken = [s for s in mine if await self._redis.hdel(key, str(s))]
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.debug("restart requests not read", extra={"error": str(exc)})
            return []
        count = self.group.shard_count
        taken = [s for s in taken if self._restarts.vouched_for(s, count, mine[s])]
        for shard_id in taken:
            _LOGGER.info("restarting a shard on request", extra={"shard": shard_id})
            await self._stop_shard(shard_id)
            try:
                await self._start_shard(shard_id)
            except Exception as exc:
                _LOGGER.warning(
                    "restarted shard did not come back",
                    extra={"shard": shard_id, "error": repr(exc)},
                )
        return taken

    async def _interest_loop(self) -> None:
        while True:
            await asyncio.sleep(INTEREST_INTERVAL)
            await self._refresh_interests()

    async def _renew_leases(self) -> None:
        """Keep our leases alive; stop any shard whose lease another gateway now holds."""
        assert self.leases is not None
        lost = await self.leases.renew(sorted(self._claimed))
        for shard_id in lost:
            _LOGGER.warning("lost the lease of a shard; stopping it", extra={"shard": shard_id})
            self._claimed.discard(shard_id)
            self._spawn(self._stop_shard(shard_id))

    async def _rebalance(self) -> None:
        """Hold this gateway's fair share of the pool's shards, no more, no less."""
        assert self.leases is not None
        assert self.group is not None
        live = await self.leases.heartbeat()
        share = self.leases.fair_share(live)
        held = sorted(self._claimed)
        for shard_id in held[share:]:
            # Stop first (session kept, seq written), then let another gateway take it.
            self._claimed.discard(shard_id)
            await self._stop_shard(shard_id)
            await self.leases.release(shard_id)
            _LOGGER.info("handed a shard back to the pool", extra={"shard": shard_id})
        wanted = share - len(self._claimed)
        if wanted <= 0:
            return
        holders = await self.leases.holders()
        for shard_id in (s for s, holder in enumerate(holders) if holder is None):
            if wanted == 0:
                break
            if await self.leases.claim(shard_id):
                wanted -= 1
                self._claimed.add(shard_id)
                # Started in the background: a slow handshake must not delay lease renewals.
                self._spawn(self._start_claimed(shard_id))

    async def _start_claimed(self, shard_id: int) -> None:
        try:
            await self._start_shard(shard_id)
        except Exception as exc:
            _LOGGER.warning(
                "could not start a claimed shard", extra={"shard": shard_id, "error": repr(exc)}
            )
            assert self.leases is not None
            self._claimed.discard(shard_id)
            with contextlib.suppress(Exception):
                await self._stop_shard(shard_id)
                await self.leases.release(shard_id)

    def _spawn(self, coro: typing.Coroutine[typing.Any, typing.Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _lease_loop(self) -> None:
        assert self.leases is not None
        while True:
            await asyncio.sleep(self.leases.ttl / 3)
            try:
                await self._renew_leases()
                await self._rebalance()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _LOGGER.warning("lease round failed", extra={"error": repr(exc)})

    # --- health -----------------------------------------------------------------------------

    def readiness(self) -> str | None:
        if self.group is None:
            return "starting"
        down = [s for s, st in self.group.stats.items() if not st.connected]
        return f"shards not connected: {down}" if down else None

    def liveness(self) -> str | None:
        """Alive while its loops run and every held shard is connected or on its way: queued
        for an IDENTIFY however long the pool's queue is, or reconnecting within hikari's
        back-off. A cold start of many shards is live long before it is ready."""
        died = sorted(t.get_name() for t in self._tasks if t.done() and not t.cancelled())
        if died:
            return f"background loops ended: {', '.join(died)}"
        stalled = self.group.stalled() if self.group is not None else []
        if stalled:
            return (
                f"shards neither connected nor queued to identify for over "
                f"{shards.STALL_AFTER:.0f} s: {stalled}"
            )
        return None

    async def _start_rpc(self) -> None:
        """Answer fleet questions (``stats``: what ``shardline status`` shows of this gateway)."""
        assert self._amqp is not None
        rpc_channel = await self._amqp.channel(publisher_confirms=True, on_return_raises=True)
        self.endpoint = rpc.Endpoint(
            rpc_channel, self.topology, self.settings.core.pool, self.gateway_id
        )

        async def stats(_: object) -> dict[str, typing.Any]:
            return self.status()

        self.endpoint.answer("stats", stats)
        await self.endpoint.start()

    def render_metrics(self) -> str:
        """What a scrape of ``/metrics`` returns (Prometheus text format)."""
        return prometheus_client.generate_latest(self.metrics).decode()

    # --- stop -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop intake, hand every shard over with its session kept, then disconnect."""
        await lifecycle.cancel_and_wait(self._tasks)
        if self._redis is not None:
            # Peers and operators see it stopping at once, not when its status goes stale
            # (a re-shard record retires a layout only while its replacement publishes).
            self._closing = True
            await self.write_status()
        if self._spawned:
            await asyncio.wait(set(self._spawned), timeout=30)
        if self.commands is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.commands.close(), BROKER_CLOSE_TIMEOUT)
        if self.group is not None:
            held = list(self.group.shards)
            await asyncio.gather(*(self._stop_shard(s) for s in held))
            if self.leases is not None:
                for shard_id in held:
                    with contextlib.suppress(Exception):
                        await self.leases.release(shard_id)
                with contextlib.suppress(Exception):
                    await self.leases.leave()
        if self.voice is not None:
            if self.group is not None:
                self.group.on_dispatch = None
            await self.voice.close()
        if self.endpoint is not None:
            await self.endpoint.close()
        if self.publisher is not None:
            await self.publisher.drain(timeout=10)
            await self._write_checkpoints()
            await self.publisher.close()
        if self.health is not None:
            await self.health.close()
        if self._amqp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._amqp.close(), BROKER_CLOSE_TIMEOUT)
        if self._redis is not None:
            await self._redis.aclose()

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


def _any_connected(status: dict[str, typing.Any]) -> bool:
    shards = status.get("shards")
    return isinstance(shards, dict) and any(
        isinstance(s, dict) and s.get("connected") for s in shards.values()
    )
