"""Acks a channel's deliveries in as few frames as it can: one ``multiple`` ack per loop turn.

An ack frame per message cost about a quarter of a bare consume loop's CPU here (a frame
marshalled, queued to aiormq's writer and its drain awaited, for each message): issue 22's
profile. Handlers that finish in the same loop turn share one ``basic.ack`` with
``multiple=true`` instead (AMQP 0-9-1, basic.ack: "up to and including" the tag).

A multiple ack settles every message of the channel still unacked up to its tag, so it names
a tag below every delivery still in a handler and below every tag not seen yet: the highest
waiting ack under that floor. Below it, each message is either waiting for this ack or settled
already (acked, rejected, nacked: no longer the broker's to ack), so nothing in hand is ever
covered. The acks above the floor go alone, at once, so a slow handler holds no prefetch slot
but its own. The tag named is always one still waiting (RabbitMQ closes the channel on an
ack of a tag it no longer holds: PRECONDITION_FAILED "unknown delivery tag"). What is tracked is
the deliveries in hand (at most the prefetch) and the acks of one turn.

Delivery tags are numbered 1, 2, 3... per channel (AMQP 0-9-1, basic.deliver: "The server-
assigned and channel-specific delivery tag"; RabbitMQ counts them up by one per delivery): a
new underlying channel (a reconnect) starts a new count, and what the old one held is the
broker's to redeliver. Deliveries may be seen out of order (two paths into the consumer while
aio-pika takes a consumer back, ``worker.deliveries``): the floor stays at the first tag not
seen until it is, and a tag missing for ``AHEAD_LIMIT`` later ones turns the channel's acks
back to one per message.
"""

from __future__ import annotations

import asyncio
import logging
import typing

import aiormq

if typing.TYPE_CHECKING:
    from worker import deliveries

_LOGGER = logging.getLogger("shardline.worker.acks")

#: Tags seen past one not seen yet before the missing one is given up on (a delivery this
#: consumer never sees would hold the floor for good): well past the prefetch.
AHEAD_LIMIT: typing.Final = 1024


class Acks:
    """The deliveries of one consumer's channel, and their acks coalesced per loop turn.

    Every delivery is announced with :meth:`delivered` before it is handled; its fate then
    with :meth:`ack` (sent by the next flush, in this loop turn's frame) or :meth:`settled`
    (after a reject or nack sent by the caller).
    """

    def __init__(self) -> None:
        #: The underlying (aiormq) channel the tracked tags belong to.
        self._channel: object = None
        #: Its deliveries seen and not settled yet.
        self._in_hand: set[int] = set()
        #: Every tag up to this one was seen; ``_ahead`` holds those seen past a gap.
        self._seen = 0
        self._ahead: set[int] = set()
        #: Acks waiting for the next flush, of ``_channel``.
        self._waiting: list[int] = []
        #: False once a tag went missing: every ack of the channel goes alone.
        self._tracked = True
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        #: Ack frames sent, multiple and alone.
        self.frames = 0
        #: Acks not sent because their channel had closed (the broker redelivers those).
        self.lost = 0

    @property
    def in_hand(self) -> int:
        """Deliveries of the current channel seen and not settled yet."""
        return len(self._in_hand)

    def delivered(self, message: deliveries.Incoming) -> None:
        """``message`` came in: it is in hand until :meth:`ack` or :meth:`settled`."""
        tag = message.delivery_tag
        channel = _channel_of(message)
        if tag is None or channel is None:
            return
        if channel is not self._channel:
            # A new underlying channel (a reconnect): its tags start again at 1, and the acks
            # still waiting for the old one cannot be sent.
            self.lost += len(self._waiting)
            self._channel = channel
            self._in_hand.clear()
            self._ahead.clear()
            self._waiting.clear()
            self._seen = 0
            self._tracked = True
        self._in_hand.add(tag)
        if tag == self._seen + 1:
            self._seen = tag
            while self._ahead and self._seen + 1 in self._ahead:
                self._seen += 1
                self._ahead.discard(self._seen)
        elif tag > self._seen and self._tracked:
            self._ahead.add(tag)
            if len(self._ahead) > AHEAD_LIMIT:
                _LOGGER.warning(
                    "a delivery was never seen: acks sent one by one on this channel",
                    extra={"tag": self._seen + 1},
                )
                self._tracked = False
                self._ahead.clear()

    def ack(self, message: deliveries.Incoming) -> None:
        """Ack ``message`` in the next frame (this loop turn's)."""
        tag = message.delivery_tag
        if tag is None:
            return
        channel = _channel_of(message)
        if channel is None:
            self.lost += 1
            _LOGGER.warning("ack not sent: its channel is closed; the broker redelivers")
            return
        if channel is not self._channel:
            # An older channel still open (a consumer started again): acked alone.
            self._spawn(self._frame(channel, tag, multiple=False, count=1))
            return
        if tag not in self._in_hand:
            if tag <= self._seen or tag in self._ahead:
                return  # settled already: a second ack would close the channel
            self._spawn(self._frame(channel, tag, multiple=False, count=1))  # never announced
            return
        self._in_hand.discard(tag)
        self._waiting.append(tag)
        self._schedule()

    def settled(self, message: deliveries.Incoming) -> None:
        """``message`` was rejected or nacked by the caller: not the broker's to ack."""
        tag = message.delivery_tag
        if tag is not None and _channel_of(message) is self._channel:
            self._in_hand.discard(tag)

    async def flush(self) -> None:
        """Send what is waiting now (a drain before the connection closes)."""
        self._schedule()
        if self._task is not None:
            await asyncio.shield(self._task)

    def _schedule(self) -> None:
        self._dirty = True
        if self._task is None:
            self._task = self._spawn(self._flush_loop())

    def _spawn(self, work: typing.Coroutine[typing.Any, typing.Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(_logged)
        return task

    async def _flush_loop(self) -> None:
        # The task's first step runs after the handlers the loop already had ready: the acks of
        # this turn go out together. One flush at a time, each queuing its frames before the
        # next looks: a lone ack queued after a multiple ack that covers it would name a tag
        # the broker no longer holds.
        try:
            while self._dirty:
                self._dirty = False
                await self._send()
        finally:
            self._task = None

    async def _send(self) -> None:
        channel, waiting = self._channel, self._waiting
        if not waiting:
            return
        self._waiting = []
        floor = min(self._in_hand, default=self._seen + 1) if self._tracked else 0
        floor = min(floor, self._seen + 1)
        below = [tag for tag in waiting if tag < floor]
        if below:
            await self._frame(channel, max(below), multiple=True, count=len(below))
        for tag in waiting:
            if tag >= floor:
                await self._frame(channel, tag, multiple=False, count=1)

    async def _frame(self, channel: object, tag: int, *, multiple: bool, count: int) -> None:
        underlay = typing.cast("aiormq.abc.AbstractChannel", channel)
        try:
            # Queued, not drained: aiormq's writer sends its queue in order, and the
            # connection's close comes after in the same queue.
            await underlay.basic_ack(tag, multiple=multiple, wait=False)
        except (Exception, asyncio.CancelledError) as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise
            # The channel is gone: the broker puts what it held back on the queue, and the
            # dedupe marks of what was handled make the redelivery a duplicate.
            self.lost += count
            _LOGGER.warning(
                "ack not sent; the broker redelivers", extra={"error": repr(exc), "tag": tag}
            )
            return
        self.frames += 1


def _channel_of(message: deliveries.Incoming) -> object:
    """The underlying channel ``message`` came on, or None once it is closed."""
    try:
        return message.channel
    except aiormq.exceptions.ChannelInvalidStateError:
        return None


def _logged(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        _LOGGER.error("acks failed", exc_info=exc)
