"""Every exchange, queue and routing key name of the broker, and their declaration.

::

    gateway ──{pool}.{EVENT}──▶ {ns}.events (topic) ──▶ {ns}.{pool}.{group}.events
                                                   └──▶ {ns}.{pool}.{group}.interactions
    worker ──{pool}.shard.{id} | {gateway id}──▶ {ns}.gateway (direct) ──▶ reply queue
    any queue ──(delivery limit, rejected)──▶ {ns}.dead (fanout) ──▶ {ns}.dead-letter
    worker ──(handler failed)──▶ {queue}.retry.{ms}ms.quorum ──(TTL expires)──▶ {queue}  (backoff)
    caller ──{pool}.service.{name}──▶ {ns}.rpc (direct) ──▶ {ns}.{pool}.service.{name} (leader)
    anyone ──{pool}.process.{id}──▶ {ns}.rpc (direct) ──▶ {ns}.{pool}.process.{id} (replies,
                                                            fleet questions to that process)

Interactions have their own queue and consumer (the priority path): a backlog of ordinary
events never stands between an INTERACTION_CREATE and Discord's 3-second deadline.
A ``namespace`` prefixes every name, so deployments (and test runs) can share one broker.
"""

from __future__ import annotations

import logging
import typing

import aio_pika
from aio_pika import exceptions as pika_errors

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

__all__: typing.Sequence[str] = (
    "DELIVERY_LIMIT",
    "HEADER_ATTEMPT",
    "HEADER_DONE",
    "HEADER_ERROR",
    "HEADER_ERROR_TYPE",
    "HEADER_REASON",
    "HEADER_REPLAY",
    "HEADER_ROUTING_KEY",
    "INTERACTION_EVENTS",
    "Topology",
)

_LOGGER = logging.getLogger("shardline.topology")
#: Replicas of a quorum queue at declaration (RabbitMQ's queue argument; the broker caps it at
#: the cluster's size). Queue arguments cannot change: a queue declared without it, or with
#: another size, keeps what it has (see :meth:`Topology.declare_quorum`).
QUORUM_SIZE_ARGUMENT: typing.Final[str] = "x-quorum-initial-group-size"
#: Deliveries of one message before the broker dead-letters it (quorum ``x-delivery-limit``).
DELIVERY_LIMIT: typing.Final[int] = 5
#: Header carrying why a message was dead-lettered by our code (malformed, unknown version).
HEADER_REASON: typing.Final[str] = "x-shardline-reason"
#: Failed handling attempts so far of a message on its way back from a retry queue.
HEADER_ATTEMPT: typing.Final[str] = "x-shardline-attempt"
#: JSON ``{dedupe key: [listener id, ...]}``: listeners that already succeeded, not run again.
HEADER_DONE: typing.Final[str] = "x-shardline-done"
#: The last failure's exception type and its (redacted, shortened) message.
HEADER_ERROR_TYPE: typing.Final[str] = "x-shardline-error-type"
HEADER_ERROR: typing.Final[str] = "x-shardline-error"
#: The routing key an event was first published with (a retry travels under another one).
HEADER_ROUTING_KEY: typing.Final[str] = "x-shardline-routing-key"
#: Set (to 1) on a message whose events Discord replayed after a RESUME (received before
#: RESUMED): another gateway, or this one before a reconnect, may have published them already.
#: While Redis is away a worker holds such a message rather than trust its own memory.
HEADER_REPLAY: typing.Final[str] = "x-shardline-replay"
#: Events that travel on the priority path.
INTERACTION_EVENTS: typing.Final[frozenset[str]] = frozenset({"INTERACTION_CREATE"})


async def _declares(
    channel: pika_abc.AbstractChannel, name: str, arguments: dict[str, typing.Any]
) -> bool:
    """Whether a durable queue ``name`` with ``arguments`` can be declared: false when it
    exists with another replica count. Tried on a throwaway channel of the same connection
    (the one aio-pika itself uses to probe queues), since a refusal closes the channel it
    came on and a robust channel is not usable again until it has restored itself."""
    underlay = await channel.get_underlay_channel()
    probe = await underlay.connection.channel(publisher_confirms=False)
    try:
        await probe.queue_declare(name, durable=True, arguments=arguments)
    except pika_errors.ChannelPreconditionFailed as exc:
        if QUORUM_SIZE_ARGUMENT in str(exc):
            return False
        raise
    finally:
        if not probe.is_closed:
            await probe.close()
    return True


async def _exchange(
    channel: pika_abc.AbstractChannel, name: str, kind: aio_pika.ExchangeType, *, restore: bool
) -> pika_abc.AbstractExchange:
    """Declare a durable exchange; ``restore``: a robust channel declares it again after a
    reconnect (only a robust channel takes ``robust=``)."""
    if isinstance(channel, aio_pika.RobustChannel):
        return await channel.declare_exchange(name, kind, durable=True, robust=restore)
    return await channel.declare_exchange(name, kind, durable=True)


async def _bind(
    queue: pika_abc.AbstractQueue,
    exchange: pika_abc.AbstractExchange | str,
    routing_key: str | None = None,
    *,
    restore: bool,
) -> None:
    """Bind ``queue``; ``restore``: the robust channel binds it again after a reconnect."""
    if isinstance(queue, aio_pika.RobustQueue):
        await queue.bind(exchange, routing_key, robust=restore)
    else:
        await queue.bind(exchange, routing_key)


def copy_message(
    message: pika_abc.AbstractIncomingMessage, headers: dict[str, typing.Any]
) -> aio_pika.Message:
    """A received message, to publish again (dead-lettering, replaying) with ``headers``."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        message_id=message.message_id,
        type=message.type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


class Topology:
    """Names and declarations for one namespace."""

    __slots__ = ("namespace", "quorum_size")

    def __init__(self, namespace: str, *, quorum_size: int | None = None) -> None:
        self.namespace = namespace
        #: Replicas of each quorum queue declared here (``AMQP_QUORUM_SIZE``); ``None``: the
        #: broker's default.
        self.quorum_size = quorum_size

    # --- names -----------------------------------------------------------------------------

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def commands_exchange(self) -> str:
        return f"{self.namespace}.gateway"

    @property
    def rpc_exchange(self) -> str:
        return f"{self.namespace}.rpc"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.dead-letter"

    def worker_queue(self, pool: str, group: str) -> str:
        return f"{self.namespace}.{pool}.{group}.events"

    def interaction_queue(self, pool: str, group: str) -> str:
        return f"{self.namespace}.{pool}.{group}.interactions"

    @staticmethod
    def retry_queue(work_queue: str, delay: float) -> str:
        """Where a failed message of ``work_queue`` waits ``delay`` seconds (the TTL is in the
        name: queue arguments cannot change, so other delays make other queues). Quorum queues
        since the RabbitMQ cluster work; the classic ones before were ``….retry.{ms}ms``."""
        return f"{work_queue}.retry.{round(delay * 1000)}ms.quorum"

    def queue_of(self, pool: str, group: str, event_name: str) -> str:
        """The worker group's queue an event is bound to (interactions have their own)."""
        if event_name in INTERACTION_EVENTS:
            return self.interaction_queue(pool, group)
        return self.worker_queue(pool, group)

    def reply_queue(self, pool: str, gateway_id: str) -> str:
        return f"{self.namespace}.{pool}.gateway.{gateway_id}"

    def service_queue(self, pool: str, service: str) -> str:
        return f"{self.namespace}.{pool}.service.{service}"

    def process_queue(self, pool: str, process_id: str) -> str:
        return f"{self.namespace}.{pool}.process.{process_id}"

    @staticmethod
    def service_key(pool: str, service: str) -> str:
        """Routing key of a request to a service (consumed by its leader only)."""
        return f"{pool}.service.{service}"

    @staticmethod
    def process_key(pool: str, process_id: str) -> str:
        """Routing key of one process's RPC queue: replies to its calls, questions to it."""
        return f"{pool}.process.{process_id}"

    @staticmethod
    def event_key(pool: str, event_name: str) -> str:
        """Routing key of a dispatch on the events exchange."""
        return f"{pool}.{event_name}"

    @staticmethod
    def lavalink_key(pool: str, event_name: str) -> str:
        """Routing key of a Lavalink event on the events exchange."""
        return f"{pool}.lavalink.{event_name}"

    @staticmethod
    def shard_key(pool: str, shard_id: int) -> str:
        """Routing key of a gateway command for whichever gateway holds that shard now."""
        return f"{pool}.shard.{shard_id}"

    @staticmethod
    def gateway_key(gateway_id: str) -> str:
        """Routing key of a gateway command for one gateway process."""
        return gateway_id

    # --- declarations ----------------------------------------------------------------------
    #
    # What a robust channel restores after a reconnect, it restores one round trip at a time,
    # and a consumer only once everything declared before it is back: with 200 ms added each
    # way, a worker's restore (every exchange, every binding, every retry queue) kept its
    # interactions waiting about 10 s after a broker restart (soak seeds 952623, 766573).
    # RabbitMQ keeps durable exchanges, durable queues and the bindings between them across a
    # restart, so those are declared here without restore (``robust=False``): what a channel
    # restores is what it consumes (the queue and its consumer) and what an exclusive queue,
    # which dies with the connection, needs again. A node that came back empty (its disk
    # lost) gets the rest from :class:`shared.broker.Redeclaring`, after the restore.

    async def declare_exchanges(
        self, channel: pika_abc.AbstractChannel
    ) -> tuple[pika_abc.AbstractExchange, pika_abc.AbstractExchange]:
        """Declare the events and commands exchanges (and the dead-letter path they rely on);
        durable, not restored by a robust channel (see above)."""
        await self.declare_dead_letter(channel)
        events = await _exchange(
            channel, self.events_exchange, aio_pika.ExchangeType.TOPIC, restore=False
        )
        commands = await self.declare_commands_exchange(channel, restore=False)
        return events, commands

    async def declare_commands_exchange(
        self, channel: pika_abc.AbstractChannel, *, restore: bool
    ) -> pika_abc.AbstractExchange:
        return await _exchange(
            channel, self.commands_exchange, aio_pika.ExchangeType.DIRECT, restore=restore
        )

    async def declare_dead_letter(
        self, channel: pika_abc.AbstractChannel
    ) -> pika_abc.AbstractQueue:
        exchange = await _exchange(
            channel, self.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, restore=False
        )
        queue = await self.declare_quorum(channel, self.dead_letter_queue, {}, restore=False)
        await _bind(queue, exchange, restore=False)
        return queue

    async def declare_quorum(
        self,
        channel: pika_abc.AbstractChannel,
        name: str,
        arguments: dict[str, typing.Any],
        *,
        restore: bool = True,
    ) -> pika_abc.AbstractQueue:
        """Declare a durable quorum queue with ``arguments``, replicated on ``quorum_size``
        nodes when that is set.

        A queue that exists already keeps its replica count (the broker refuses a declaration
        whose size differs, and an upgrade must not stop at it): then it is declared again
        without the size, so every other argument is still checked. More replicas for an
        existing queue are the operator's ``rabbitmq-queues grow`` (docs/operations.md).
        """
        wanted = {"x-queue-type": "quorum", **arguments}
        if self.quorum_size is not None:
            sized = {**wanted, QUORUM_SIZE_ARGUMENT: self.quorum_size}
            if await _declares(channel, name, sized):
                wanted = sized
            else:
                _LOGGER.info(
                    "quorum queue exists with another replica count; kept as it is",
                    extra={"queue": name, "wanted": self.quorum_size},
                )
        if isinstance(channel, aio_pika.RobustChannel):
            return await channel.declare_queue(name, durable=True, arguments=wanted, robust=restore)
        return await channel.declare_queue(name, durable=True, arguments=wanted)

    def _worker_queue_arguments(self) -> dict[str, typing.Any]:
        return {
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_letter_exchange,
        }

    async def declare_worker_queues(
        self,
        channel: pika_abc.AbstractChannel,
        pool: str,
        group: str,
        event_names: typing.Iterable[str],
    ) -> tuple[pika_abc.AbstractQueue, pika_abc.AbstractQueue]:
        """Declare a worker group's two queues, bound only to the events it listens to.

        Bindings for events the group no longer listens to are removed, so a deploy that drops
        a listener also stops the traffic (selective forwarding). The queues are restored by a
        robust channel (they are consumed); the rest is :meth:`declare_worker_routes`.
        """
        # The interactions queue first: a robust channel restores its queues in the order
        # they were first declared, and the interactions' 3 s should not wait for the other.
        interactions = await self.declare_quorum(
            channel, self.interaction_queue(pool, group), self._worker_queue_arguments()
        )
        events = await self.declare_quorum(
            channel, self.worker_queue(pool, group), self._worker_queue_arguments()
        )
        await self.declare_worker_routes(channel, pool, group, event_names)
        return events, interactions

    async def declare_worker_routes(
        self,
        channel: pika_abc.AbstractChannel,
        pool: str,
        group: str,
        event_names: typing.Iterable[str],
    ) -> None:
        """The exchanges and the bindings of a worker group's queues (which must exist), none
        restored by a robust channel: what :class:`shared.broker.Redeclaring` declares again
        after a reconnect."""
        events_exchange, _ = await self.declare_exchanges(channel)
        for name in sorted(set(event_names)):
            queue = await channel.get_queue(self.queue_of(pool, group, name), ensure=False)
            await _bind(queue, events_exchange, self.event_key(pool, name), restore=False)

    async def declare_retry_queues(
        self,
        channel: pika_abc.AbstractChannel,
        work_queue: str,
        delays: typing.Sequence[float],
    ) -> list[str]:
        """Declare ``work_queue``'s retry queues, one per delay, and return their names.

        Delayed redelivery through the broker: a message published (by the default exchange)
        to a retry queue waits out its per-queue TTL there, unconsumed, and is then
        dead-lettered straight back to ``work_queue`` (not through the events exchange, which
        would hand it to every group again). One TTL per queue, so the oldest message is
        always the first to expire. Quorum queues (message TTL and at-least-once dead-lettering
        since RabbitMQ 3.10.0, its release notes), so a waiting retry is replicated like the
        work queue and survives a node loss; at-least-once keeps an expired message until the
        work queue has taken it (it needs ``reject-publish`` overflow, never reached here:
        there is no length limit).
        """
        names = []
        for delay in delays:
            name = self.retry_queue(work_queue, delay)
            await self.declare_quorum(
                channel,
                name,
                {
                    "x-message-ttl": max(1, round(delay * 1000)),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": work_queue,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
                restore=False,  # durable, and nothing here consumes it
            )
            names.append(name)
        return names

    async def unbind_worker_events(
        self,
        channel: pika_abc.AbstractChannel,
        pool: str,
        group: str,
        event_names: typing.Iterable[str],
    ) -> None:
        """Remove bindings of events a worker group stopped listening to."""
        for name in event_names:
            queue = await channel.get_queue(self.queue_of(pool, group, name), ensure=False)
            await queue.unbind(self.events_exchange, self.event_key(pool, name))

    async def declare_reply_queue(
        self, channel: pika_abc.AbstractChannel, pool: str, gateway_id: str
    ) -> pika_abc.AbstractQueue:
        """Declare a gateway's own queue (exclusive, auto-delete), bound by its gateway id.

        The name is chosen here rather than by the broker so that a robust connection can
        re-declare the same queue after a reconnect.
        """
        # Restored with the queue: an exclusive queue dies with its connection, and its
        # bindings need the exchange (a node that came back empty has none).
        commands = await self.declare_commands_exchange(channel, restore=True)
        queue = await channel.declare_queue(
            self.reply_queue(pool, gateway_id), exclusive=True, auto_delete=True
        )
        await queue.bind(commands, self.gateway_key(gateway_id))
        return queue

    async def bind_shard(self, queue: pika_abc.AbstractQueue, pool: str, shard_id: int) -> None:
        await queue.bind(self.commands_exchange, self.shard_key(pool, shard_id))

    async def unbind_shard(self, queue: pika_abc.AbstractQueue, pool: str, shard_id: int) -> None:
        await queue.unbind(self.commands_exchange, self.shard_key(pool, shard_id))

    async def declare_rpc_exchange(
        self, channel: pika_abc.AbstractChannel, *, restore: bool = True
    ) -> pika_abc.AbstractExchange:
        return await _exchange(
            channel, self.rpc_exchange, aio_pika.ExchangeType.DIRECT, restore=restore
        )

    async def declare_service_queue(
        self, channel: pika_abc.AbstractChannel, pool: str, service: str
    ) -> pika_abc.AbstractQueue:
        """A service's request queue: durable, so requests wait out a leader's failover, and
        single-active-consumer, so even two processes that both believe they lead never both
        handle requests."""
        # No dead-lettering: a request whose caller gave up (its expiration) is dropped, not
        # parked beside real poison messages; handler errors are answered, never requeued.
        queue = await self.declare_quorum(
            channel, self.service_queue(pool, service), {"x-single-active-consumer": True}
        )
        await self.declare_service_route(channel, pool, service)
        return queue

    async def declare_service_route(
        self, channel: pika_abc.AbstractChannel, pool: str, service: str
    ) -> None:
        """The RPC exchange and a service queue's binding (the queue must exist), not restored
        by a robust channel: :class:`shared.broker.Redeclaring` declares them again."""
        exchange = await self.declare_rpc_exchange(channel, restore=False)
        queue = await channel.get_queue(self.service_queue(pool, service), ensure=False)
        await _bind(queue, exchange, self.service_key(pool, service), restore=False)

    async def declare_process_queue(
        self, channel: pika_abc.AbstractChannel, pool: str, process_id: str
    ) -> pika_abc.AbstractQueue:
        """One process's own RPC queue (exclusive: it disappears with the process, so a
        request to a dead process is unroutable and fails at once)."""
        exchange = await self.declare_rpc_exchange(channel)
        queue = await channel.declare_queue(
            self.process_queue(pool, process_id), exclusive=True, auto_delete=True
        )
        await queue.bind(exchange, self.process_key(pool, process_id))
        return queue

    def all_static_names(self) -> tuple[list[str], list[str]]:
        """(exchanges, queues) that exist once per namespace: what a clean-up removes."""
        return (
            [
                self.events_exchange,
                self.commands_exchange,
                self.dead_letter_exchange,
                self.rpc_exchange,
            ],
            [self.dead_letter_queue],
        )
