"""The broker connection: one or several RabbitMQ nodes, with failover between them.

``AMQP_URL`` holds one URL or a comma-separated list, one per node of a RabbitMQ cluster
(``amqp://u:p@rabbit-0:5672/,amqp://u:p@rabbit-1:5672/``; a comma inside a password is written
``%2C``). A process connects to the first node that answers, in the order given. When that
connection drops (the node died, was stopped, or the network cut it), aio-pika's robust
connection reconnects, and every attempt after a drop or a failed attempt goes to the *next*
node of the list: the first attempt after a node loss already lands on another node, not on
the dead one. The robust channels then re-declare what they declared (exchanges, queues,
bindings, consumers): a gateway's exclusive reply queue and a process's RPC queue, which died
with the node's connection, come back on the new node under the same names, bound again.

aio-pika's ``connect_robust`` takes one URL and reconnects to it; :class:`FailoverConnection`
only changes which URL each attempt uses (``RobustConnection`` reads ``self.url`` for every
attempt and calls ``_on_connection_close`` after a drop and after every failed attempt:
aio-pika 10.2, ``robust_connection.py`` and ``abc.UnderlayConnection.connect``).

URLs carry passwords: nothing here logs or raises one (aio-pika masks the password in
``str(connection)``; errors name the node by its position and host).
"""

from __future__ import annotations

import logging
import typing
import urllib.parse

import aio_pika
import yarl
from aio_pika import exceptions as pika_errors
from prometheus_client import core as prometheus_core

from shared.secret import Secret

if typing.TYPE_CHECKING:
    import asyncio
    import collections.abc

    from aio_pika import abc as pika_abc

__all__: typing.Sequence[str] = (
    "DEFAULT_QUORUM_SIZE",
    "FAILOVER_RECONNECT_INTERVAL",
    "BrokerCollector",
    "FailoverConnection",
    "connect",
    "default_quorum_size",
    "node_name",
    "split_urls",
)

_LOGGER = logging.getLogger("shardline.amqp")
_SCHEMES: typing.Final = frozenset({"amqp", "amqps"})
#: Replicas of a quorum queue when the cluster is given node by node: RabbitMQ's own advice
#: (three tolerate one node lost; five, two) and no more than the nodes named.
DEFAULT_QUORUM_SIZE: typing.Final[int] = 3
#: Seconds between reconnect attempts (aio-pika's default is 5). With several nodes each attempt
#: tries another node, so a node that is down costs one interval, not five seconds; with one,
#: a restarted broker is found within a second of answering, not up to five later (soak seed
#: 330917: an interaction 1.7 s after a restart ended waited for the reconnect and missed its
#: 3 s). A ``reconnect_interval`` in the URLs' query wins.
FAILOVER_RECONNECT_INTERVAL: typing.Final[float] = 1.0


def split_urls(raw: str) -> tuple[Secret, ...]:
    """The node URLs of an ``AMQP_URL`` value; raises ``ValueError`` with a reason that never
    repeats a URL (they carry passwords)."""
    parts = [part.strip() for part in raw.split(",")]
    if not any(parts):
        raise ValueError("is empty")
    if len(parts) > 1 and not all(parts):
        raise ValueError("has an empty entry (two commas, or one at an end)")
    urls = []
    for index, part in enumerate(parts, start=1):
        which = "" if len(parts) == 1 else f"entry {index} of {len(parts)}: "
        split = urllib.parse.urlsplit(part)
        if split.scheme not in _SCHEMES:
            raise ValueError(f"{which}expected an amqp:// or amqps:// URL")
        if not split.hostname:
            raise ValueError(f"{which}has no host")
        try:
            split.port  # noqa: B018 - parsing is the check
        except ValueError:
            raise ValueError(f"{which}its port is not a number") from None
        urls.append(Secret(part))
    if len({url.reveal() for url in urls}) != len(urls):
        raise ValueError("names the same node twice")
    return tuple(urls)


def default_quorum_size(nodes: int) -> int | None:
    """Replicas per quorum queue when ``AMQP_QUORUM_SIZE`` is unset: ``min(3, nodes)`` for a
    cluster named node by node; ``None`` (the broker's default) for one URL, which may be one
    node or a load balancer in front of many."""
    return min(DEFAULT_QUORUM_SIZE, nodes) if nodes > 1 else None


def node_name(url: Secret) -> str:
    """``host:port`` of a node URL: what logs and errors say instead of the URL."""
    split = urllib.parse.urlsplit(url.reveal())
    return f"{split.hostname}:{split.port or (5671 if split.scheme == 'amqps' else 5672)}"


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over several nodes: each reconnect attempt goes to the next one."""

    def __init__(
        self,
        url: yarl.URL,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        nodes: typing.Sequence[Secret] = (),
        first: int = 0,
        **kwargs: typing.Any,
    ) -> None:
        super().__init__(url, loop, **kwargs)
        self._nodes = tuple(yarl.URL(node.reveal()) for node in nodes) or (self.url,)
        self._names = tuple(node_name(node) for node in nodes) or ("?",)
        self._current = first % len(self._nodes)
        self.url = self._nodes[self._current]
        #: Moves to the next node so far (after a drop or a failed attempt).
        self.failovers = 0

    @property
    def node(self) -> str:
        """``host:port`` of the node this connection uses (or tries) now."""
        return self._names[self._current]

    async def _on_connection_close(self, closing: asyncio.Future[typing.Any]) -> None:
        # Called when a live connection drops and after each failed attempt: the next attempt
        # goes to the next node, unless this connection is being closed for good.
        if len(self._nodes) > 1 and not (self.close_called or self.is_closed):
            was = self.node
            self._current = (self._current + 1) % len(self._nodes)
            self.url = self._nodes[self._current]
            self.failovers += 1
            if self.connection_attempt:  # before the first connection, connect() says it
                _LOGGER.warning(
                    "broker connection lost or refused; next attempt on another node",
                    extra={"node": was, "next_node": self.node},
                )
        await super()._on_connection_close(closing)


class BrokerCollector:
    """Prometheus metrics of a process's broker connection: which node it uses and how often
    it moved to another (``shardline_broker_failovers_total``: a rise is a node lost)."""

    def __init__(self) -> None:
        #: Set once connected; nothing is exported before.
        self.connection: pika_abc.AbstractRobustConnection | None = None

    def collect(self) -> collections.abc.Iterator[prometheus_core.Metric]:
        connection = self.connection
        if not isinstance(connection, FailoverConnection):
            return
        failovers = prometheus_core.CounterMetricFamily(
            "shardline_broker_failovers",
            "Moves of the broker connection to the next node of AMQP_URL (after a drop or a "
            "failed attempt)",
        )
        failovers.add_metric([], connection.failovers)
        yield failovers
        node = prometheus_core.GaugeMetricFamily(
            "shardline_broker_node",
            "1 for the broker node (host:port) the connection uses or tries now",
            labels=["node"],
        )
        node.add_metric([connection.node], 0 if connection.is_closed else 1)
        yield node


async def connect(
    urls: typing.Sequence[Secret], *, reconnect_interval: float | None = None
) -> pika_abc.AbstractRobustConnection:
    """A robust connection to the first node of ``urls`` that answers, failing over to the
    others afterwards. Raises the last node's error (which names no URL) when none answers."""
    if not urls:
        raise ValueError("no broker URL given")
    extra: dict[str, typing.Any] = {}
    if reconnect_interval is None:
        reconnect_interval = FAILOVER_RECONNECT_INTERVAL
    if reconnect_interval is not None and not any(
        "reconnect_interval" in yarl.URL(url.reveal()).query for url in urls
    ):
        extra["reconnect_interval"] = reconnect_interval
    last: BaseException | None = None
    for first, url in enumerate(urls):
        # Built here, not by connect_robust, which would put our arguments in the URL's query.
        connection = FailoverConnection(
            yarl.URL(url.reveal()), nodes=tuple(urls), first=first, **extra
        )
        try:
            await connection.connect()
        except pika_errors.CONNECTION_EXCEPTIONS as exc:
            last = exc
            await connection.close()
            if len(urls) > 1:
                _LOGGER.warning(
                    "broker node unreachable; trying the next",
                    extra={"node": node_name(url), "error_type": type(exc).__name__},
                )
        else:
            return connection
    assert last is not None
    raise last
