"""Connecting to RabbitMQ at start: a process started while the broker is down (a restart,
a deploy during a broker failover) waits for it instead of exiting with a traceback.

``aio_pika.connect_robust`` reconnects on its own once connected, but its first connect
fails fast; a worker or gateway started by a restart policy would crash-loop for as long as
the broker is away (found by the soak: ``python -m bench.soak --seed 311771``).
"""

from __future__ import annotations

import asyncio
import logging
import typing

import aiormq
from aio_pika import exceptions as pika_errors

from shared import amqp

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

    from shared.secret import Secret

_LOGGER = logging.getLogger("shardline.broker")
#: Seconds between attempts; the last one repeats.
RETRY_DELAYS: typing.Final = (0.5, 1.0, 2.0, 5.0)
_UNREACHABLE: typing.Final = (
    OSError,
    aiormq.exceptions.AMQPConnectionError,
    TimeoutError,
    *pika_errors.CONNECTION_EXCEPTIONS,
)


class BrokerStoppedError(RuntimeError):
    """Asked to stop while RabbitMQ was still unreachable."""


async def connect(
    urls: typing.Sequence[Secret], stopping: asyncio.Event
) -> pika_abc.AbstractRobustConnection:
    """A robust connection to the first of ``urls`` that answers (failing over to the others
    afterwards: ``shared.amqp``), retried until one answers or ``stopping`` is set (then
    :class:`BrokerStoppedError`)."""
    attempt = 0
    while True:
        try:
            return await amqp.connect(urls)
        except _UNREACHABLE as exc:
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            if attempt == 0:
                _LOGGER.warning(
                    "RabbitMQ unreachable; retrying until it answers",
                    extra={"error": exc.__class__.__name__},
                )
            attempt += 1
        try:
            await asyncio.wait_for(stopping.wait(), delay)
        except TimeoutError:
            continue
        raise BrokerStoppedError("stopped before RabbitMQ answered")
