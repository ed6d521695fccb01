"""Acks a channel's deliveries in as few frames as it can: one ``multiple`` ack per loop turn.

An ack frame per message cost about a quarter of a bare consume loop's CPU here (a frame
marshalled, queued to aiormq's writer and its drain awaited, for each message): issue 22's
profile. Handlers that finish in the same loop turn share one ``basic.ack`` with
``multiple=true`` instead (AMQP 0-9-1, basic.ack: "up to and including" the tag).

A multiple ack settles every message of the channel still unacked up to its tag, so it is sent
only over a run of tags that were all settled here, from the lowest one the channel holds: a
message still in a handler is never covered. Tags settled behind one still in a handler are
acked alone, at once, so a slow handler holds no prefetch slot but its own. The tag a multiple
ack names must itself be unacked (RabbitMQ closes the channel on an unknown tag), so it is the
highest tag of the run still waiting for its ack, never one rejected or acked already.

Delivery tags are numbered 1, 2, 3... per channel (AMQP 0-9-1, 1.8.3.13 "The server MUST NOT use
a zero value for delivery tags"; they increase by one per delivery on a channel): a new
underlying channel (a reconnect) starts a new count, and what the old one held is the broker's
to redeliver.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import typing

import aiormq

if typing.TYPE_CHECKING:
    from worker import deliveries

_LOGGER = logging.getLogger("shardline.worker.acks")

#: A delivery's state while it is tracked: its ack is waiting for the next frame...
_ACK: typing.Final = 1
#: ...or it is settled already (rejected, nacked, or acked in a frame of its own).
_SETTLED: typing.Final = 2


class Acks:
    """The deliveries of one consumer's channel, and their acks coalesced per loop turn.

    Every delivery is announced with :meth:`delivered` before it is handled, in the order the
    channel delivered them; its fate then with :meth:`ack` (sent by the next :meth:`flush`)
    or :meth:`settled` (after a reject or nack sent by the caller).
    """

    def __init__(self) -> None:
        #: The underlying (aiormq) channel the tracked tags belong to.
        self._channel: object = None
        #: Tags of that channel not yet covered by a multiple ack, lowest first.
        self._order: collections.deque[int] = collections.deque()
        #: Their states (absent: still in hand).
        self._state: dict[int, int] = {}
        #: The highest tag of the channel all tags up to which are settled.
        self._low = 0
        #: False once the channel's tags were seen out of order: every ack goes alone.
        self._tracked = True
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        #: Frames sent: multiple acks, and acks alone (behind a delivery still in hand).
        self.frames = 0
        self.acked = 0
        #: Acks not sent because their channel had closed (the broker redelivers those).
        self.lost = 0

    def delivered(self, message: deliveries.Incoming) -> None:
        """``message`` came in: it is in hand until :meth:`ack` or :meth:`settled`."""
        tag = message.delivery_tag
        channel = _channel_of(message)
        if tag is None or channel is None:
            return
        if channel is not self._channel:
            # A new underlying channel (a reconnect): its tags start again at 1.
            self._channel = channel
            self._order.clear()
            self._state.clear()
            self._low = 0
            self._tracked = True
        if not self._tracked:
            return
        last = self._order[-1] if self._order else self._low
        if tag != last + 1:
            # A tag not seen, or out of the channel's order: a multiple ack could cover a
            # message not handled, so this channel's acks go alone from now on.
            _LOGGER.warning(
                "deliveries out of order: acks sent one by one", extra={"tag": tag, "last": last}
            )
            self._tracked = False
            self._schedule()  # what waits goes alone
            return
        self._order.append(tag)

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
            self._spawn(self._alone(channel, tag))
            return
        if tag <= self._low or tag in self._state:
            return  # settled already: a second ack would close the channel
        self._state[tag] = _ACK
        self._schedule()

    def settled(self, message: deliveries.Incoming) -> None:
        """``message`` was rejected or nacked by the caller: not the broker's to ack."""
        tag = message.delivery_tag
        if tag is None or _channel_of(message) is not self._channel or tag <= self._low:
            return
        self._state[tag] = _SETTLED
        self._schedule()

    async def flush(self) -> None:
        """Send what is waiting now (a drain before the connection closes)."""
        self._schedule()
        if self._task is not None:
            await self._task

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
        # this turn go out together. One flush at a time, each of its frames queued before the
        # next flush looks: a multiple ack queued ahead of a lone ack it covers would name a
        # tag the broker no longer holds, and RabbitMQ closes the channel for that.
        try:
            while self._dirty:
                self._dirty = False
                await self._send()
        finally:
            self._task = None

    async def _send(self) -> None:
        channel = self._channel
        order, state = self._order, self._state
        last = 0
        while (
            self._tracked
            and order
            and order[0] == self._low + 1
            and state.get(order[0]) is not None
        ):
            tag = order.popleft()
            if state.pop(tag) == _ACK:
                last = tag
            self._low = tag
        alone = [tag for tag, kind in state.items() if kind == _ACK]
        if self._tracked:
            for tag in alone:
                state[tag] = _SETTLED
        else:
            order.clear()
            state.clear()
        if last:
            await self._frame(channel, last, multiple=True)
        for tag in alone:
            await self._frame(channel, tag, multiple=False)

    async def _alone(self, channel: object, tag: int) -> None:
        await self._frame(channel, tag, multiple=False)

    async def _frame(self, channel: object, tag: int, *, multiple: bool) -> None:
        underlay = typing.cast("typing.Any", channel)
        self.frames += 1
        try:
            await underlay.basic_ack(tag, multiple=multiple)
        except Exception as exc:
            # The channel is gone: the broker puts what it held back on the queue, and the
            # dedupe marks of what was handled make the redelivery a duplicate.
            _LOGGER.warning(
                "ack not sent; the broker redelivers", extra={"error": repr(exc), "tag": tag}
            )
            return
        self.acked += 1


def _channel_of(message: deliveries.Incoming) -> object:
    """The underlying channel ``message`` came on, or None once it is closed."""
    try:
        return message.channel
    except aiormq.exceptions.ChannelInvalidStateError:
        return None


def _logged(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if (exc := task.exception()) is not None:
            _LOGGER.error("acks failed", exc_info=exc)
