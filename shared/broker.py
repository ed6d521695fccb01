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

import aio_pika
import aiormq

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

_LOGGER = logging.getLogger("shardline.broker")
#: Seconds between attempts; the last one repeats.
RETRY_DELAYS: typing.Final = (0.5, 1.0, 2.0, 5.0)
_UNREACHABLE: typing.Final = (OSError, aiormq.exceptions.AMQPConnectionError, TimeoutError)


class BrokerStoppedError(RuntimeError):
    """Asked to stop while RabbitMQ was still unreachable."""


async def connect(url: str, stopping: asyncio.Event) -> pika_abc.AbstractRobustConnection:
    """A robust connection to ``url``, retried until the broker answers or ``stopping`` is
    set (then :class:`BrokerStoppedError`)."""
    attempt = 0
    while True:
        try:
            return await aio_pika.connect_robust(url)
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
