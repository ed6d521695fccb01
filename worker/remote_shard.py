"""A shard that lives in a gateway: what bot code calls on it becomes a gateway command.

When answering an event, commands go to the reply queue of the gateway that delivered it;
otherwise to ``{pool}.shard.{id}``, which routes to whichever gateway holds the shard now.
"""

from __future__ import annotations

import typing

import aio_pika
import hikari

from shared import gateway_commands, topology

if typing.TYPE_CHECKING:
    import datetime as dt

    from aio_pika import abc as pika_abc

_STATUS: typing.Final = {
    hikari.Status.ONLINE: "online",
    hikari.Status.DO_NOT_DISTURB: "dnd",
    hikari.Status.IDLE: "idle",
    hikari.Status.OFFLINE: "invisible",
}


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
        intents: hikari.Intents = hikari.Intents.NONE,
    ) -> None:
        self._channel = channel
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
        message = aio_pika.Message(
            gateway_commands.encode(command), content_type="application/json"
        )
        if self._reply_to is not None:
            await self._channel.default_exchange.publish(message, routing_key=self._reply_to)
        else:
            exchange = await self._channel.get_exchange(self._topology.commands_exchange)
            await exchange.publish(
                message, routing_key=self._topology.shard_key(self._pool, self._id)
            )

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
