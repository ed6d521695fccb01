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
import contextlib
import logging
import typing

import aio_pika
import aiormq
from aio_pika import exceptions as pika_errors

from shared import amqp

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

    from shared.secret import Secret

_LOGGER = logging.getLogger("shardline.broker")
_T = typing.TypeVar("_T")
#: A declaration step of :class:`Redeclaring`, given the channel to declare on.
Step = typing.Callable[["pika_abc.AbstractChannel"], typing.Awaitable[object]]
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


class Redeclaring:
    """Declares again what the robust channels do not restore: the durable exchanges,
    bindings and queues nothing here consumes (``shared.topology`` says why they are left out
    of the restore), after each reconnect and after the broker cancels a consumer of a
    :meth:`watch`-ed channel (its queue was deleted: aio-pika declares the queue and consumes
    it again, but not its bindings, which are declared here).

    RabbitMQ keeps all of them across a restart, so this is for a node that came back empty
    (its disk lost) or a queue deleted under a consumer. The steps run after the restore, off
    the path the consumers wait on, on a channel of their own (a publish to an exchange not
    declared yet must not close the channel they use), and a round that fails is run again,
    ``RETRY_DELAYS`` apart, until it passes or :meth:`close`. ``rounds`` counts the rounds
    that passed, and ``declared`` is set by each (the next trigger clears it).
    """

    def __init__(self, connection: pika_abc.AbstractRobustConnection) -> None:
        self._connection = connection
        self._steps: list[tuple[str, Step]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.rounds = 0
        self.declared = asyncio.Event()
        connection.reconnect_callbacks.add(self._trigger)

    def add(self, what: str, step: Step) -> None:
        """Run ``step`` (given a channel of its own) at every trigger; it must be safe to run
        again."""
        self._steps.append((what, step))

    async def watch(self, channel: pika_abc.AbstractChannel) -> None:
        """Run the steps when the broker cancels a consumer of ``channel`` (after each reopen
        too: the underlying channel is a new one); nothing for a channel that is not robust."""
        if not isinstance(channel, aio_pika.RobustChannel):
            return

        async def hook(*_: object) -> None:
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(self._trigger)

        await hook()
        channel.reopen_callbacks.add(hook)

    def _trigger(self, *_: object) -> None:
        if self._closed:
            return
        if self._task is not None:
            self._task.cancel()
        self.declared.clear()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="declare again what the restore leaves out"
        )

    async def _run(self) -> None:
        attempt = 0
        while not await self._round():
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1
        self.rounds += 1
        self.declared.set()

    async def _round(self) -> bool:
        try:
            await self._connection.ready()
            # Not the robust channel the connection would give: nothing of it is restored.
            channel: pika_abc.AbstractChannel = await aio_pika.Channel(
                self._connection, publisher_confirms=False
            )
        except Exception as exc:
            _LOGGER.warning(
                "RabbitMQ: no channel to declare again on; retrying",
                extra={"error": exc.__class__.__name__},
            )
            return False
        try:
            for what, step in self._steps:
                try:
                    await step(channel)
                except Exception as exc:
                    _LOGGER.warning(
                        "RabbitMQ: declaring again what the restore leaves out failed; retrying",
                        extra={"step": what, "error": exc.__class__.__name__},
                    )
                    return False
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return True

    async def close(self) -> None:
        self._closed = True
        self._connection.reconnect_callbacks.discard(self._trigger)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
