"""Starting and stopping this gateway's shards together with the route that brings each
shard's gateway commands here (``{pool}.shard.{id}`` on the commands exchange, bound to this
gateway's reply queue), so a command follows its shard through every hand-off."""

from __future__ import annotations

import asyncio
import contextlib
import typing

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

    from gateway import shards
    from shared import topology

#: A broker that is away must not hold a shutdown hostage: each broker step waits this long.
BROKER_STEP_TIMEOUT: typing.Final[float] = 5.0


class ShardHolder:
    def __init__(
        self,
        group: shards.ShardGroup,
        *,
        names: topology.Topology,
        pool: str,
        reply_queue: pika_abc.AbstractQueue,
        standby: typing.Callable[[], bool],
    ) -> None:
        self.group = group
        self._names = names
        self._pool = pool
        self._queue = reply_queue
        #: Whether this gateway is a re-shard's standby layout (it takes no commands yet).
        self._standby = standby

    @property
    def held(self) -> list[int]:
        return sorted(self.group.shards)

    async def start(self, shard_id: int) -> None:
        """Start (RESUME or IDENTIFY) and route its commands here, unless standing by."""
        standby = self._standby()
        if not standby:
            await self._bind(shard_id)
        await self.group.start_shard(shard_id)
        if standby and not self._standby():  # it went live while this shard started
            await self._bind(shard_id)

    async def stop(self, shard_id: int) -> None:
        """Stop with its session kept, and stop routing its commands here."""
        await self.group.stop_shard(shard_id)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._names.unbind_shard(self._queue, self._pool, shard_id), BROKER_STEP_TIMEOUT
            )

    async def route_all(self) -> None:
        """A standby layout goes live: every held shard's commands come here from now on."""
        for shard_id in self.held:
            await self._bind(shard_id)

    async def _bind(self, shard_id: int) -> None:
        await self._names.bind_shard(self._queue, self._pool, shard_id)
