"""Voice follows publishing: the gateway's Lavalink bridge (``gateway.voice``) runs while its
layout publishes, is started when a re-shard's standby layout goes live, and is closed, with
its Lavalink sessions left resumable, when the layout retires or the gateway stops."""

from __future__ import annotations

import typing

from gateway import voice

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway import publisher as publisher_module
    from gateway import shards
    from shared import config
    from shared import keys as keys_module

__all__: typing.Sequence[str] = ("VoiceSwitch",)


class VoiceSwitch:
    """Starts and stops this gateway's Lavalink bridge."""

    def __init__(
        self,
        settings: config.LavalinkSettings,
        *,
        redis: aioredis.Redis,
        keys: keys_module.RedisKeys,
        events: publisher_module.EventPublisher,
        gateway_id: str,
        group: shards.ShardGroup,
        user_id: typing.Callable[[], typing.Awaitable[int]],
        announce: typing.Callable[[], typing.Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._keys = keys
        self._publisher = events
        self._gateway_id = gateway_id
        self._group = group
        self._user_id = user_id
        self._announce = announce
        self.bridge: voice.VoiceBridge | None = None

    async def start(self) -> None:
        group = self._group
        bridge = self.bridge = voice.VoiceBridge(
            self._settings,
            redis=self._redis,
            keys=self._keys,
            publisher=self._publisher,
            gateway_id=self._gateway_id,
            user_id=await self._user_id(),
            shard_count=lambda: group.shard_count,
        )
        group.on_dispatch = bridge.on_dispatch
        # Visible as alive before its Lavalink sessions are listed: other gateways adopt the
        # sessions of gateways without a status.
        await self._announce()
        await bridge.start()

    async def stop(self) -> None:
        """Close the bridge; its Lavalink sessions stay resumable for a successor."""
        bridge, self.bridge = self.bridge, None
        if bridge is None:
            return
        self._group.on_dispatch = None
        await bridge.close()
