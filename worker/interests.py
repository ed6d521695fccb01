"""A worker group's interests, announced to the gateways (``shared.interests``).

A replica announces them before it consumes, re-announces every :data:`ANNOUNCE_INTERVAL`
seconds (so a Redis that lost its data heals without a restart), and reports ready only once
every live gateway acknowledged them in its status record, or after :data:`ACK_TIMEOUT`
seconds (said in the log): an event published before then would have been skipped.
"""

from __future__ import annotations

import asyncio
import logging
import typing

from shared import fleet, lifecycle, redis_client
from shared import interests as shared_interests

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import clock, keys

#: What a Redis call on these paths may fail with (each caught and logged).
_FAILURES: typing.Final[tuple[type[BaseException], ...]] = (
    *redis_client.REDIS_ERRORS,
    TimeoutError,
)

_LOGGER = logging.getLogger("shardline.worker.interests")

#: How often a replica re-announces its group's interests.
ANNOUNCE_INTERVAL: typing.Final[float] = 5.0
#: How long a replica waits for the gateways' acknowledgements before it reports ready anyway.
ACK_TIMEOUT: typing.Final[float] = 10.0
#: How often it looks for them meanwhile.
ACK_POLL: typing.Final[float] = 0.2
#: A Redis call that takes longer is abandoned (the next round tries again).
CALL_TIMEOUT: typing.Final[float] = 2.0


class InterestAnnouncer:
    """Announces one replica's interests and knows when the gateways have them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        group: str,
        events: typing.Iterable[str],
        *,
        clock: clock.Clock,
        ack_timeout: float = ACK_TIMEOUT,
    ) -> None:
        self._redis = redis
        self._keys = redis_keys
        self.group = group
        self.events = frozenset(events)
        self._clock = clock
        self._ack_timeout = ack_timeout
        self._tasks = lifecycle.TaskGroup(_LOGGER)
        #: True once every live gateway acknowledged (or the wait timed out).
        self.acknowledged = False
        self.announcements = 0

    async def announce(self, *, replace: bool = True) -> bool:
        """Write the group's interests (``replace``: exactly these); ``False`` when Redis
        could not take them (the next round tries again)."""
        try:
            await asyncio.wait_for(
                shared_interests.announce(
                    self._redis, self._keys, self.group, self.events, replace=replace
                ),
                CALL_TIMEOUT,
            )
        except _FAILURES as exc:
            _LOGGER.warning("interests not announced yet", extra={"error": repr(exc)})
            return False
        self.announcements += 1
        return True

    def start(self) -> None:
        """Re-announce from now on and wait for the gateways' acknowledgements."""
        self._tasks.every(
            ANNOUNCE_INTERVAL,
            lambda: self.announce(replace=False),
            name="interests-announce",
            clock=self._clock,
        )
        self._tasks.spawn(self.wait_acknowledged(), name="interests-acknowledged")

    async def close(self) -> None:
        await self._tasks.close()

    async def unacknowledged(self) -> list[str]:
        """The live gateways that do not (yet) apply this group's current interests."""
        members = await shared_interests.group_members(self._redis, self._keys, self.group)
        if shared_interests.MARKER not in members or not self.events <= members:
            await self.announce(replace=False)  # lost meanwhile: the gateways publish anyway
            return ["(interests not in Redis)"]
        current = shared_interests.version(members)
        return [
            status.gateway
            for status in await fleet.gateway_statuses(self._redis, self._keys)
            if not status.stopping
            and not shared_interests.acknowledged(status.interests, self.group, current)
        ]

    async def wait_acknowledged(self) -> None:
        """Set :attr:`acknowledged` once every live gateway applies this group's interests."""
        deadline = self._clock.monotonic() + self._ack_timeout
        pending: list[str] = ["(not read yet)"]
        while self._clock.monotonic() < deadline:
            try:
                pending = await asyncio.wait_for(self.unacknowledged(), CALL_TIMEOUT)
            except _FAILURES as exc:
                pending = [f"(Redis: {exc!r})"]
            if not pending:
                self.acknowledged = True
                return
            await self._clock.sleep(ACK_POLL)
        _LOGGER.warning(
            "ready although gateways have not acknowledged this group's interests "
            "(events only this group listens to may be skipped until they do)",
            extra={"gateways": pending, "waited": self._ack_timeout},
        )
        self.acknowledged = True
