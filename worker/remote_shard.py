"""A shard that lives in a gateway: what bot code calls on it becomes a gateway command.

When answering an event, commands go to the reply queue of the gateway that delivered it;
otherwise to ``{pool}.shard.{id}``, which routes to whichever gateway holds the shard now.

With :class:`CommandReplies` (what the bot hands out) a call waits, as hikari's own shard does,
until the gateway has sent the command, and raises
:class:`shared.gateway_commands.GatewayCommandError` with the gateway's reason when it did not.
"""

from __future__ import annotations

import asyncio
import typing
import uuid
from collections import abc as collections_abc

import aio_pika
import hikari
from aio_pika import abc as pika_abc
from aio_pika import exceptions as pika_errors

from shared import gateway_commands, topology
from shared.gateway_commands import CommandRefusal, GatewayCommandError, RefusalReason

if typing.TYPE_CHECKING:
    import datetime as dt

_STATUS: typing.Final = {
    hikari.Status.ONLINE: "online",
    hikari.Status.DO_NOT_DISTURB: "dnd",
    hikari.Status.IDLE: "idle",
    hikari.Status.OFFLINE: "invisible",
}


#: RabbitMQ's direct reply-to: answers come straight to the channel that sent the command.
_DIRECT_REPLY_TO: typing.Final = "amq.rabbitmq.reply-to"
#: How long a caller waits for the gateway's answer. A shard over Discord's 120 commands a
#: minute (Gateway > Rate Limiting) holds a command up to the rest of that window before it
#: sends it; a caller gives up sooner, told the command may still go out.
ANSWER_TIMEOUT: typing.Final[float] = 10.0


class CommandReplies:
    """The gateway's answers to this replica's commands, matched by correlation id.

    Uses direct reply-to on the channel the commands are published on (RabbitMQ requires the
    same channel), so no queue is declared per call.

    A call never waits out its timeout for an answer that cannot come: a command no queue took
    (published mandatory, returned by the broker) is refused at once with ``NO_ROUTE``, and
    when the channel is lost (a broker node died) every waiting call ends with
    ``CONNECTION_LOST``; once the robust channel is back, the reply consumer (which aio-pika
    does not restore: it was never declared) is started again on first use."""

    def __init__(
        self, channel: pika_abc.AbstractChannel, *, timeout: float = ANSWER_TIMEOUT
    ) -> None:
        self._channel = channel
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._consuming: asyncio.Task[None] | None = None
        channel.return_callbacks.add(self._on_return)
        channel.close_callbacks.add(self._on_close)
        if isinstance(channel, pika_abc.AbstractRobustChannel):
            channel.reopen_callbacks.add(self._on_reopen)

    def _fail_all(self, refusal: CommandRefusal) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(GatewayCommandError(refusal))

    def _on_return(self, _: object, message: pika_abc.AbstractIncomingMessage) -> None:
        future = self._pending.get(message.correlation_id or "")
        if future is not None and not future.done():
            future.set_exception(
                GatewayCommandError(
                    CommandRefusal(
                        RefusalReason.NO_ROUTE,
                        "no gateway queue took the command (no gateway holds the shard, or "
                        "it is reconnecting after a broker node loss); it was not sent",
                    )
                )
            )

    def _on_close(self, _: object, __: BaseException | None = None) -> None:
        self._consuming = None  # the reply consumer died with the channel
        self._fail_all(
            CommandRefusal(
                RefusalReason.CONNECTION_LOST,
                "the broker connection was lost while waiting for the gateway's answer; "
                "the command may or may not have been sent",
            )
        )

    def _on_reopen(self, _: object) -> None:
        self._consuming = None

    async def _consume(self) -> None:
        queue = await self._channel.get_queue(_DIRECT_REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: pika_abc.AbstractIncomingMessage) -> None:
        future = self._pending.get(message.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(message.body)

    async def call(
        self, message: aio_pika.Message, publish: typing.Callable[[], typing.Awaitable[object]]
    ) -> None:
        """Publish ``message`` (through ``publish``) and raise unless the gateway sent it."""
        if self._consuming is None:
            self._consuming = asyncio.get_running_loop().create_task(self._consume())
        try:
            await asyncio.shield(self._consuming)
        except pika_errors.CONNECTION_EXCEPTIONS:
            self._consuming = None  # tried again by the next call
            raise GatewayCommandError(
                CommandRefusal(
                    RefusalReason.CONNECTION_LOST,
                    "the broker connection is down (reconnecting); the command was not sent",
                )
            ) from None
        correlation_id = message.correlation_id = uuid.uuid4().hex
        # aiormq hands a returned message to the return callbacks only when it has an id.
        message.message_id = message.message_id or correlation_id
        message.reply_to = _DIRECT_REPLY_TO
        future = self._pending[correlation_id] = asyncio.get_running_loop().create_future()
        try:
            try:
                await publish()
            except pika_errors.CONNECTION_EXCEPTIONS:
                # The channel is down or being restored (a broker node lost): typed, like the
                # other ways a command can fail to reach a gateway.
                raise GatewayCommandError(
                    CommandRefusal(
                        RefusalReason.CONNECTION_LOST,
                        "the broker connection was lost while publishing the command; it may "
                        "or may not have been sent",
                    )
                ) from None
            try:
                body = await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                raise GatewayCommandError(
                    CommandRefusal(
                        RefusalReason.NO_ANSWER,
                        f"no gateway answered within {self._timeout:g} s (none holds the shard "
                        "now, or it is gone); the command may or may not have been sent",
                    )
                ) from None
        finally:
            self._pending.pop(correlation_id, None)
        refusal = gateway_commands.decode_reply(body)
        if refusal is not None:
            raise GatewayCommandError(refusal)


class RemoteShard:
    """The parts of ``hikari.api.GatewayShard`` that make sense from a worker."""

    def __init__(
        self,
        channel: pika_abc.AbstractChannel,
        *,
        pool: str,
        namespace: str,
        shard_id: int,
        shard_count: int,
        reply_to: str | None = None,
        replies: CommandReplies | None = None,
        intents: hikari.Intents = hikari.Intents.NONE,
    ) -> None:
        self._channel = channel
        self._replies = replies
        self._pool = pool
        self._topology = topology.Topology(namespace)
        self._id = shard_id
        self._count = shard_count
        self._reply_to = reply_to
        self._intents = intents

    @property
    def id(self) -> int:
        return self._id

    @property
    def shard_count(self) -> int:
        return self._count

    @property
    def intents(self) -> hikari.Intents:
        """The intents the gateways identify with (``INTENTS``)."""
        return self._intents

    async def _send(self, op: int, d: dict[str, typing.Any]) -> None:
        command = gateway_commands.GatewayCommand(op, self._id, d)
        gateway_commands.validate(command)
        body = gateway_commands.encode(command)
        if len(body) > gateway_commands.MAX_COMMAND_BYTES:
            raise gateway_commands.CommandError(
                f"a command of {len(body)} bytes (limit {gateway_commands.MAX_COMMAND_BYTES})"
            )
        message = aio_pika.Message(body, content_type="application/json")

        async def publish() -> None:
            if self._reply_to is not None:
                await self._channel.default_exchange.publish(message, routing_key=self._reply_to)
            else:
                exchange = await self._channel.get_exchange(
                    self._topology.commands_exchange, ensure=False
                )
                await exchange.publish(
                    message, routing_key=self._topology.shard_key(self._pool, self._id)
                )

        if self._replies is None:
            await publish()
        else:
            await self._replies.call(message, publish)

    async def update_voice_state(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        channel: hikari.SnowflakeishOr[hikari.GuildVoiceChannel] | None,
        *,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> None:
        await self._send(
            gateway_commands.OP_VOICE_STATE_UPDATE,
            {
                "guild_id": str(int(guild)),
                "channel_id": None if channel is None else str(int(channel)),
                "self_mute": self_mute,
                "self_deaf": self_deaf,
            },
        )

    async def update_presence(
        self,
        *,
        idle_since: dt.datetime | None = None,
        afk: bool = False,
        activity: hikari.Activity | None = None,
        status: hikari.Status = hikari.Status.ONLINE,
    ) -> None:
        activities = []
        if activity is not None:
            activities.append(
                {"name": activity.name, "type": int(activity.type), "url": activity.url}
            )
        await self._send(
            gateway_commands.OP_PRESENCE_UPDATE,
            {
                "since": None if idle_since is None else int(idle_since.timestamp() * 1000),
                "activities": activities,
                "status": _STATUS.get(status, "online"),
                "afk": afk,
            },
        )

    async def request_guild_members(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        *,
        include_presences: bool = False,
        query: str = "",
        limit: int = 0,
        users: typing.Sequence[hikari.SnowflakeishOr[hikari.User]] | None = None,
        nonce: str | None = None,
    ) -> None:
        d: dict[str, typing.Any] = {"guild_id": str(int(guild)), "presences": include_presences}
        if users:
            d["user_ids"] = [str(int(u)) for u in users]
        else:
            d.update({"query": query, "limit": limit})
        if nonce is not None:
            d["nonce"] = nonce
        await self._send(gateway_commands.OP_REQUEST_GUILD_MEMBERS, d)


class RemoteShards(collections_abc.Mapping[int, RemoteShard]):
    """``bot.shards``: every shard of the pool by id, each a remote shard (hikari's
    ``GatewayBot.shards`` holds the shards of its own process; a worker holds none)."""

    def __init__(
        self, shard: typing.Callable[[int], RemoteShard], count: typing.Callable[[], int]
    ) -> None:
        self._shard = shard
        self._count = count

    def __getitem__(self, shard_id: int) -> RemoteShard:
        if not 0 <= shard_id < self._count():
            raise KeyError(shard_id)
        return self._shard(shard_id)

    def __iter__(self) -> typing.Iterator[int]:
        return iter(range(self._count()))

    def __len__(self) -> int:
        return self._count()
