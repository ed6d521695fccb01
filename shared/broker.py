"""Connecting to RabbitMQ at start: a process started while the broker is down (a restart,
a deploy during a broker failover) waits for it instead of exiting with a traceback; and a
broker lost while the process declares what it uses (exchanges, queues, bindings, consumers)
makes it wait for the robust connection to come back and declare that step again.

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
_T = typing.TypeVar("_T")
#: Seconds between attempts; the last one repeats.
RETRY_DELAYS: typing.Final = (0.5, 1.0, 2.0, 5.0)
_UNREACHABLE: typing.Final = (
    OSError,
    aiormq.exceptions.AMQPConnectionError,
    TimeoutError,
    *pika_errors.CONNECTION_EXCEPTIONS,
)


#: What a declare in flight raises when the broker goes away under it: the connection closed
#: (aiormq's ``ConnectionClosed`` and the socket's errors) or the channel it used died with it
#: (``ChannelInvalidStateError``). A channel closed by the broker for a bad declare (a
#: precondition, an access refusal) is none of these, and still fails the start.
_LOST: typing.Final = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
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


async def declaring(
    connection: pika_abc.AbstractRobustConnection,
    stopping: asyncio.Event,
    what: str,
    step: typing.Callable[[], typing.Awaitable[_T]],
) -> _T:
    """Run one broker step of a start (a channel, exchanges, queues, bindings, consumers) and,
    if the broker is lost under it, run it again once the robust connection is back (it
    restores what the earlier steps declared), until it passes or ``stopping`` is set (then
    :class:`BrokerStoppedError`). ``step`` must be safe to run again after a partial run.

    Without it a broker lost during a start raised out of ``start()`` and the process exited
    (found by the soak: ``python -m bench.soak --seed 51645`` and ``--seed 3433``).
    """
    attempt = 0
    while True:
        try:
            return await step()
        except _LOST as exc:
            if connection.is_closed:
                raise  # closed on purpose (the process is stopping), not lost
            _LOGGER.warning(
                "RabbitMQ lost during start; retrying the step once it is back",
                extra={"step": what, "error": exc.__class__.__name__, "attempt": attempt + 1},
            )
        delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
        attempt += 1
        # The pause lets the robust connection notice the loss (``connected`` is cleared when
        # it does), then the step waits for the reconnect, or for a stop.
        await _stop_or(stopping, asyncio.sleep(delay))
        await _stop_or(stopping, connection.connected.wait())


async def _stop_or(stopping: asyncio.Event, waiting: typing.Awaitable[object]) -> None:
    """Wait for ``waiting``; raise :class:`BrokerStoppedError` if ``stopping`` is set first."""
    waiter = asyncio.ensure_future(waiting)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, stop):
            task.cancel()
        await asyncio.gather(waiter, stop, return_exceptions=True)
    if stopping.is_set():
        raise BrokerStoppedError("stopped while waiting for RabbitMQ to come back")
