"""Gateway commands from workers: validated, sent on the right shard, answered.

Every command ends acked, whatever happens to it: sent (``{"ok":true}``) or refused with a
:class:`shared.gateway_commands.CommandRefusal`; a refusal nobody waits for goes to the
dead-letter queue with its reason. A message left unacked would hold one of the channel's
prefetch slots for good, and enough of them stop the gateway's command intake.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import typing

import aio_pika
import hikari

from shared import gateway_commands, topology
from shared.gateway_commands import CommandRefusal, RefusalReason

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

    from gateway import shards

_LOGGER = logging.getLogger("shardline.gateway.commands")
_STATUS: typing.Final = {
    "online": hikari.Status.ONLINE,
    "dnd": hikari.Status.DO_NOT_DISTURB,
    "idle": hikari.Status.IDLE,
    "invisible": hikari.Status.OFFLINE,
    "offline": hikari.Status.OFFLINE,
}


class CommandConsumer:
    """Consumes the gateway's reply queue; one task per command, so a throttled shard (hikari
    holds each shard to Discord's 120 commands a minute) never delays another."""

    def __init__(
        self,
        queue: pika_abc.AbstractQueue,
        channel: pika_abc.AbstractChannel,
        group: shards.ShardGroup,
        gateway_id: str,
        *,
        intents: int | None = None,
        names: topology.Topology | None = None,
    ) -> None:
        self._queue = queue
        self._intents = intents
        self._names = names
        self._channel = channel
        self._group = group
        self._gateway_id = gateway_id
        self._tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.handled = 0
        self.rejected = 0

    async def start(self) -> None:
        if self._tag is None:  # safe to call again after a broker lost during the start
            self._tag = await self._queue.consume(self._on_message)

    async def close(self) -> None:
        if self._tag is not None:
            await self._queue.cancel(self._tag)
            self._tag = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)

    async def _on_message(self, message: pika_abc.AbstractIncomingMessage) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: pika_abc.AbstractIncomingMessage) -> None:
        try:
            refusal = await self._run(message)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the gateway is stopping: not this command's doing
            # hikari cancels what waits in a shard's rate limiter when the shard reconnects.
            refusal = CommandRefusal(
                RefusalReason.NOT_SENT,
                "the shard reconnected while the command waited for Discord's rate limit",
            )
        if refusal is None:
            self.handled += 1
        else:
            self.rejected += 1
            _LOGGER.warning(
                "gateway command refused",
                extra={"reason": refusal.message, "refusal": refusal.reason.value},
            )
        try:
            await self._answer(message, refusal)
        finally:
            await message.ack()

    async def _run(self, message: pika_abc.AbstractIncomingMessage) -> CommandRefusal | None:
        """Send one command; the refusal when it was not sent."""
        limit = gateway_commands.MAX_COMMAND_BYTES
        if len(message.body) > limit:
            return CommandRefusal(
                RefusalReason.TOO_LARGE, f"a command of {len(message.body)} bytes (limit {limit})"
            )
        try:
            command = gateway_commands.decode(message.body, intents=self._intents)
        except gateway_commands.CommandError as exc:
            return CommandRefusal(RefusalReason.INVALID, f"invalid gateway command: {exc}")
        shard = self._group.shard(command.shard_id)
        if shard is None or not shard.is_alive:
            return CommandRefusal(
                RefusalReason.NOT_HELD,
                f"shard {command.shard_id} is not held by gateway {self._gateway_id}",
            )
        try:
            await self._send(shard, command)
        except (hikari.ComponentStateConflictError, hikari.errors.GatewayError) as exc:
            return CommandRefusal(
                RefusalReason.NOT_SENT, f"shard could not send the command: {exc}"
            )
        except (hikari.errors.MissingIntentError, ValueError, TypeError, OverflowError) as exc:
            # What validation should have caught: refused all the same, and logged to fix it.
            _LOGGER.warning("a command passed validation but not the shard", exc_info=True)
            return CommandRefusal(RefusalReason.INVALID, f"invalid gateway command: {exc}")
        except Exception:
            _LOGGER.exception("a gateway command failed")
            return CommandRefusal(
                RefusalReason.FAILED, "the gateway failed to send the command; see its log"
            )
        return None

    async def _send(
        self, shard: hikari.api.GatewayShard, command: gateway_commands.GatewayCommand
    ) -> None:
        d = command.d
        if command.op == gateway_commands.OP_VOICE_STATE_UPDATE:
            await shard.update_voice_state(
                int(d["guild_id"]),
                None if d["channel_id"] is None else int(d["channel_id"]),
                self_mute=d["self_mute"],
                self_deaf=d["self_deaf"],
            )
        elif command.op == gateway_commands.OP_PRESENCE_UPDATE:
            activity = None
            if d["activities"]:
                first = d["activities"][0]
                activity = hikari.Activity(
                    name=first["name"],
                    type=hikari.ActivityType(first["type"]),
                    url=first.get("url"),
                    state=first.get("state"),
                )
            since = d.get("since")
            await shard.update_presence(
                status=_STATUS[d["status"]],
                afk=d["afk"],
                activity=activity,
                idle_since=None
                if since is None
                else dt.datetime.fromtimestamp(since / 1000, dt.UTC),
            )
        else:
            await shard.request_guild_members(
                int(d["guild_id"]),
                include_presences=d.get("presences", hikari.UNDEFINED),
                query=d.get("query", ""),
                limit=d.get("limit", 0),
                users=[
                    int(u)
                    for u in (d["user_ids"] if isinstance(d["user_ids"], list) else [d["user_ids"]])
                ]
                if "user_ids" in d
                else hikari.UNDEFINED,
                nonce=d.get("nonce", hikari.UNDEFINED),
            )

    async def _answer(
        self, message: pika_abc.AbstractIncomingMessage, refusal: CommandRefusal | None
    ) -> None:
        """Reply to a caller that waits; park a refusal nobody waits for on the dead letters."""
        try:
            if message.reply_to:
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        gateway_commands.encode_reply(refusal),
                        correlation_id=message.correlation_id,
                        content_type="application/json",
                    ),
                    routing_key=message.reply_to,
                )
            elif refusal is not None and self._names is not None:
                exchange = await self._channel.get_exchange(
                    self._names.dead_letter_exchange, ensure=False
                )
                headers = dict(message.headers or {})
                headers[topology.HEADER_REASON] = f"{refusal.reason}: {refusal.message}"
                await exchange.publish(
                    topology.copy_message(message, headers), routing_key=message.routing_key or ""
                )
        except Exception as exc:
            _LOGGER.warning("could not answer a gateway command", extra={"error": repr(exc)})
