"""The consumer's deliveries as aiormq hands them, without aio-pika's message object per delivery.

aio-pika's consume path builds an ``IncomingMessage`` per delivery (fifteen attributes set
through ``Message.__setattr__``) and runs the callback in a task of its own, on top of the task
aiormq already made for the delivery: together about a fifth of a bare consume loop's CPU
here (issue 22's profile). :func:`take` points aiormq's callback for a consumer tag that
aio-pika registered (and restores after a reconnect) straight at ours, which wraps the delivery
in a :class:`Delivery` holding only what the consumer reads. aio-pika's own path stays the
fallback: a consumer aio-pika consumes again (after the broker cancelled it) hands
``IncomingMessage`` objects to the same code until the channel's next reopen takes it back.
"""

from __future__ import annotations

import typing

import aiormq

if typing.TYPE_CHECKING:
    from aiormq import abc as aiormq_abc


class Incoming(typing.Protocol):
    """What the consumer reads of a delivery: aio-pika's ``IncomingMessage`` or a
    :class:`Delivery`."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> typing.Mapping[str, typing.Any]: ...
    @property
    def delivery_tag(self) -> int | None: ...
    @property
    def redelivered(self) -> bool | None: ...
    @property
    def routing_key(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def channel(self) -> aiormq_abc.AbstractChannel: ...

    async def reject(self, requeue: bool = False) -> None: ...

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


class Delivery:
    """One delivery, read once from aiormq's frames: the body, the properties the consumer
    copies onto a retry or a dead letter, and where to settle it."""

    __slots__ = (
        "_channel",
        "body",
        "content_type",
        "delivery_tag",
        "headers",
        "message_id",
        "redelivered",
        "routing_key",
        "type",
    )

    def __init__(self, delivered: aiormq_abc.DeliveredMessage) -> None:
        properties = delivered.header.properties
        self.body: bytes = delivered.body
        self.headers: typing.Mapping[str, typing.Any] = properties.headers or {}
        self.content_type: str | None = properties.content_type
        self.message_id: str | None = properties.message_id
        self.type: str | None = properties.message_type
        self.delivery_tag: int | None = delivered.delivery_tag
        self.redelivered: bool | None = delivered.redelivered
        self.routing_key: str | None = delivered.routing_key
        self._channel = delivered.channel

    @property
    def channel(self) -> aiormq_abc.AbstractChannel:
        """The channel it came on; raises, as aio-pika's message does, once it is closed."""
        if self._channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{self._channel!r} closed")
        return self._channel

    async def reject(self, requeue: bool = False) -> None:
        assert self.delivery_tag is not None
        await self.channel.basic_reject(self.delivery_tag, requeue=requeue)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        assert self.delivery_tag is not None
        await self.channel.basic_nack(self.delivery_tag, multiple=multiple, requeue=requeue)


OnDelivery = typing.Callable[["aiormq_abc.DeliveredMessage"], typing.Awaitable[None]]


def take(underlay: aiormq_abc.AbstractChannel, tag: str, callback: OnDelivery) -> bool:
    """Point aiormq's callback for consumer ``tag`` on ``underlay`` at ``callback``; False
    when the channel has no such consumer (it is consumed again later)."""
    consumers: dict[str, typing.Any] = getattr(underlay, "consumers", {})
    if tag not in consumers:
        return False
    consumers[tag] = callback
    return True
