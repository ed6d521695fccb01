"""Services: work that runs exactly once across the fleet, callable from any process.

A service is defined in a plugin and loaded by every replica; each replica with the
``services`` role stands for its leadership (a Redis lease). The leader consumes the
service's request queue and runs its background tasks; the others wait, and the first to see
the lease end takes over. Requests are durable messages, so calls made during a failover are
answered by the successor (if their timeout allows).

::

    def setup(bot):
        twitch = bot.services.define("twitch")

        @twitch.method
        async def lookup(args):
            return {"live": args["login"] in live_now}

        @twitch.background
        async def poll():
            while True:
                ...

    # anywhere, any replica (or a handler):
    await bot.services.call("twitch", "lookup", {"login": "someone"})
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import typing

from shared import lifecycle, redis_client, rpc
from worker.services import leader

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc

    from shared import keys as keys_module
    from shared import topology as topology_module

__all__: typing.Sequence[str] = ("DEFAULT_LEASE", "Service", "ServiceHost", "Services")

_LOGGER = logging.getLogger("shardline.services")
#: Seconds a leader holds a service without renewing: the longest a dead leader is missed.
DEFAULT_LEASE: typing.Final[float] = 10.0
#: Longest a candidate waits between looks at a lease (a released lease is taken this fast).
CANDIDATE_POLL: typing.Final[float] = 1.0
#: Pause before a crashed background task of a service is started again.
BACKGROUND_RESTART_DELAY: typing.Final[float] = 5.0

_LEASE_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    TimeoutError,
    *redis_client.REDIS_ERRORS,
)

Background = typing.Callable[[], typing.Awaitable[None]]


@dataclasses.dataclass(slots=True)
class Service:
    """A service's name, lease, request handlers and background tasks."""

    name: str
    lease: float = DEFAULT_LEASE
    methods: dict[str, rpc.Handler] = dataclasses.field(default_factory=dict)
    tasks: list[Background] = dataclasses.field(default_factory=list)

    def method(self, handler: rpc.Handler) -> rpc.Handler:
        """Register ``handler`` (``async def name(args) -> result``) under its function name."""
        self.methods[handler.__name__] = handler
        return handler

    def background(self, task: Background) -> Background:
        """Run ``task`` (``async def name() -> None``) on the leader, for as long as it leads."""
        self.tasks.append(task)
        return task


class Services:
    """``bot.services``: define services, and call any service of the pool."""

    def __init__(self) -> None:
        self.defined: dict[str, Service] = {}
        self._endpoint: rpc.Endpoint | None = None

    def define(self, name: str, *, lease: float = DEFAULT_LEASE) -> Service:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"service name {name!r}: use letters, digits, '-' and '_'")
        if name in self.defined:
            raise ValueError(f"service {name!r} is defined twice")
        if lease <= 0:
            raise ValueError(f"service {name!r}: lease must be positive")
        service = Service(name, lease)
        self.defined[name] = service
        return service

    def attach(self, endpoint: rpc.Endpoint) -> None:
        self._endpoint = endpoint

    async def call(
        self,
        service: str,
        method: str,
        args: typing.Any = None,
        *,
        timeout: float = rpc.DEFAULT_TIMEOUT,
    ) -> typing.Any:
        """``method(args)`` on ``service``'s leader; raises :class:`shared.rpc.RpcError`s."""
        if self._endpoint is None:
            raise rpc.RpcError("services are not available before the worker has started")
        endpoint = self._endpoint
        try:
            return await endpoint.request(
                endpoint.topology.service_key(endpoint.pool, service),
                method,
                args,
                timeout=timeout,
                target=f"service {service!r}",
            )
        except rpc.TargetUnavailableError:
            raise rpc.TargetUnavailableError(
                f"service {service!r} is not defined by any running replica"
            ) from None


class ServiceHost:
    """Stands for the leadership of every defined service; leads those it wins."""

    def __init__(
        self,
        services: typing.Iterable[Service],
        *,
        channel: pika_abc.AbstractChannel,
        redis: aioredis.Redis,
        keys: keys_module.RedisKeys,
        topology: topology_module.Topology,
        process_id: str,
    ) -> None:
        self.services = list(services)
        self.channel = channel
        self.redis = redis
        self.keys = keys
        self.topology = topology
        self.process_id = process_id
        self.leading: set[str] = set()
        self._campaigns: list[asyncio.Task[None]] = []
        self._exchange: pika_abc.AbstractExchange | None = None
        self._queues: dict[str, pika_abc.AbstractQueue] = {}
        self._consumers: dict[str, str] = {}
        self._background: dict[str, list[asyncio.Task[None]]] = {}
        self._leases: dict[str, leader.Lease] = {}
        self.handovers = 0

    async def start(self) -> None:
        self._exchange = await self.topology.declare_rpc_exchange(self.channel, restore=False)
        loop = asyncio.get_running_loop()
        for service in self.services:
            if service.name in self._queues:
                continue  # declared before a broker loss cut an earlier run short
            self._queues[service.name] = await self.topology.declare_service_queue(
                self.channel, self.keys.pool, service.name
            )
            self._leases[service.name] = leader.Lease(
                self.redis, self.keys.service_leader(service.name), self.process_id, service.lease
            )
            self._campaigns.append(
                loop.create_task(self._campaign(service), name=f"service-{service.name}")
            )

    async def declare_routes(self, channel: pika_abc.AbstractChannel) -> None:
        """Bind every service queue again on ``channel`` (a broker node that came back empty,
        a queue deleted under its consumer: ``shared.broker.Redeclaring``)."""
        for name in list(self._queues):
            await self.topology.declare_service_route(channel, self.keys.pool, name)

    async def close(self) -> None:
        """Stop leading and give every lease up, so successors take over at once."""
        await lifecycle.cancel_and_wait(self._campaigns)
        self._campaigns.clear()
        for service in self.services:
            if service.name in self.leading:
                await self._step_down(service, "shutting down")
                with contextlib.suppress(*redis_client.REDIS_ERRORS):
                    await self._leases[service.name].release()

    async def _campaign(self, service: Service) -> None:
        lease = self._leases[service.name]
        renew_every = service.lease / 3
        valid_until = 0.0
        while True:
            started = time.monotonic()
            try:
                left = await asyncio.wait_for(lease.claim(), renew_every)
            except _LEASE_ERRORS as exc:
                if service.name in self.leading and time.monotonic() >= valid_until - renew_every:
                    await self._step_down(service, f"lease not renewed: {exc!r}")
                await asyncio.sleep(renew_every)
                continue
            if left == 0.0:
                valid_until = started + service.lease
                if service.name not in self.leading:
                    try:
                        await self._lead(service)
                    except Exception:
                        # The broker refused the consumer (reconnecting, say): give the lease
                        # back so another replica can lead, and stand again later.
                        _LOGGER.exception("could not lead service", extra={"service": service.name})
                        await self._step_down(service, "could not consume its requests")
                        with contextlib.suppress(*_LEASE_ERRORS):
                            await lease.release()
                await asyncio.sleep(renew_every)
                continue
            if service.name in self.leading:  # someone else holds it: we lost it
                await self._step_down(service, "lease taken by another process")
            # Wake when the holder's lease ends (if it does not renew, we take over then), or
            # soon anyway: a leader that stops gracefully releases its lease early.
            await asyncio.sleep(min(left + 0.01, renew_every, CANDIDATE_POLL))

    async def _lead(self, service: Service) -> None:
        assert self._exchange is not None
        exchange = self._exchange
        what = f"service {service.name}"

        async def on_request(message: pika_abc.AbstractIncomingMessage) -> None:
            await rpc.serve_request(exchange, message, service.methods, what=what)

        self._consumers[service.name] = await self._queues[service.name].consume(on_request)
        self.leading.add(service.name)
        self.handovers += 1
        loop = asyncio.get_running_loop()
        self._background[service.name] = [
            loop.create_task(self._keep_running(service, task), name=f"{what}: {task.__name__}")
            for task in service.tasks
        ]
        _LOGGER.info("leading service", extra={"service": service.name, "holder": self.process_id})

    async def _keep_running(self, service: Service, task: Background) -> None:
        while True:
            try:
                await task()
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception(
                    "service background task failed; restarting it",
                    extra={"service": service.name, "task": task.__name__},
                )
            else:
                return
            await asyncio.sleep(BACKGROUND_RESTART_DELAY)

    async def _step_down(self, service: Service, reason: str) -> None:
        self.leading.discard(service.name)
        tag = self._consumers.pop(service.name, None)
        if tag is not None:
            with contextlib.suppress(Exception):
                await self._queues[service.name].cancel(tag)
        await lifecycle.cancel_and_wait(self._background.pop(service.name, []))
        _LOGGER.warning(
            "stopped leading service", extra={"service": service.name, "reason": reason}
        )
