"""How deep the group's queues and the pool's dead-letter queue are, for metrics.

Read every :data:`INTERVAL` seconds with passive declarations (RabbitMQ answers with the
queue's ready messages and consumers) on a channel of its own, each with a deadline. A read
that fails leaves the depth unknown, exported as no sample at all: never a made-up zero that
an alert on a growing dead-letter queue would take for good news.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import typing

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

_LOGGER = logging.getLogger("shardline.worker.queue_depth")

#: Seconds between reads (Prometheus scrapes every 15 s).
INTERVAL: typing.Final[float] = 10.0
#: Seconds one read of all queues may take.
DEADLINE: typing.Final[float] = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Depth:
    messages: int
    consumers: int


class QueueDepths:
    """Polls queue depths in the background; :attr:`depths` holds the last known ones."""

    def __init__(
        self,
        connection: pika_abc.AbstractRobustConnection,
        queues: typing.Sequence[str],
        *,
        interval: float = INTERVAL,
    ) -> None:
        self._connection = connection
        self.queues = tuple(queues)
        self._interval = interval
        #: By queue name; a queue whose last read failed is absent (unknown).
        self.depths: dict[str, Depth] = {}
        self._channel: pika_abc.AbstractRobustChannel | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.read()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="queue-depths")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._drop_channel()

    async def read(self) -> None:
        """One read of every queue; what fails becomes unknown, the rest is kept."""
        for name in self.queues:
            try:
                self.depths[name] = await asyncio.wait_for(self._read(name), DEADLINE)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.depths.pop(name, None)
                await self._drop_channel()  # a failed passive declare closes the channel
                _LOGGER.debug("queue depth unknown", extra={"queue": name, "error": repr(exc)})

    async def _drop_channel(self) -> None:
        stale, self._channel = self._channel, None
        if stale is not None and not stale.is_closed:
            try:
                await asyncio.wait_for(stale.close(), 1.0)
            except Exception as exc:
                _LOGGER.debug("queue depth channel not closed", extra={"error": repr(exc)})

    async def _read(self, name: str) -> Depth:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        # Not kept for re-declaration (robust=False): aio-pika answers a robust channel's
        # later passive declarations of a kept queue from the first answer, a frozen depth.
        queue = await self._channel.declare_queue(name, passive=True, robust=False)
        result = queue.declaration_result
        return Depth(int(result.message_count or 0), int(result.consumer_count or 0))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one bad round end the loop
                _LOGGER.warning("queue depth round failed", extra={"error": repr(exc)})
