"""Which events some worker group listens to (selective forwarding), as this gateway sees it.

``None`` is unknown, and unknown means publish every event: before the first read, while the
change notifications' subscription is down (a change may be missed), and whenever Redis shows
no index, a listed group without its set, or a set without its marker (a FLUSHALL, an eviction,
a failover). Changes arrive at once through ``keys.interests_channel()``; a re-read every
:data:`BACKSTOP_INTERVAL` seconds catches whatever a notification could not say (a FLUSHALL
sends none). What was applied is acknowledged in the gateway's status record, which workers
wait for before they report ready.
"""

from __future__ import annotations

import asyncio
import logging
import typing

from shared import interests as shared_interests
from shared import pubsub, redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway import publisher
    from shared import clock, keys, lifecycle

#: What a Redis call on these paths may fail with (each caught and logged).
_FAILURES: typing.Final[tuple[type[BaseException], ...]] = (
    *redis_client.REDIS_ERRORS,
    TimeoutError,
)

_LOGGER = logging.getLogger("shardline.gateway.interests")

#: How often the interests are re-read whatever the notifications said.
BACKSTOP_INTERVAL: typing.Final[float] = 10.0
#: How long a starting gateway waits to know the interests (it publishes everything until).
START_WAIT: typing.Final[float] = 2.0
#: A read that takes longer is abandoned (the view stays as it is until the next one).
READ_TIMEOUT: typing.Final[float] = 2.0


class InterestView:
    """The gateway's view of the worker groups' interests, applied to its publisher."""

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        events: publisher.EventPublisher,
        *,
        clock: clock.Clock,
    ) -> None:
        self._redis = redis
        self._keys = redis_keys
        self._events = events
        self._clock = clock
        #: Run after each change applied (the app writes its status: the acknowledgement).
        self.on_applied: typing.Callable[[], typing.Coroutine[typing.Any, typing.Any, None]]
        self.on_applied = _nothing
        self._settled = asyncio.Event()
        self._tasks: lifecycle.TaskGroup | None = None
        self._known: shared_interests.Interests | None = None
        self._subscribed = False
        self._pending = False
        self._refreshing: asyncio.Task[None] | None = None
        #: Reads done, by cause, for tests and metrics.
        self.reads = 0
        self.notifications = 0

    @property
    def acknowledged(self) -> typing.Mapping[str, str] | None:
        """Each group's version applied; ``None``: every event is published."""
        return None if self._known is None else dict(self._known.versions)

    @property
    def subscribed(self) -> bool:
        """Whether change notifications are followed now."""
        return self._subscribed

    def start(self, tasks: lifecycle.TaskGroup) -> None:
        """Follow the notifications and re-read every :data:`BACKSTOP_INTERVAL` seconds."""
        self._tasks = tasks
        tasks.every(1.0, self._follow, name="interest-notifications", first_now=True)
        tasks.every(BACKSTOP_INTERVAL, self.refresh, name="interests", clock=self._clock)

    async def settled(self, timeout: float) -> bool:
        """Wait until the notifications are followed and the interests read once (a gateway
        starting its shards then publishes only what is wanted), for up to ``timeout``."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def refresh(self) -> None:
        """Read every group's interests and apply them (never raises)."""
        self.reads += 1
        try:
            found = await asyncio.wait_for(
                shared_interests.read(self._redis, self._keys), READ_TIMEOUT
            )
        except _FAILURES as exc:
            _LOGGER.warning("interests not read: keeping the view", extra={"error": repr(exc)})
            return
        except Exception:
            _LOGGER.exception("interests not read: keeping the view")
            return
        self._apply(found if self._subscribed else None)

    def _apply(self, found: shared_interests.Interests | None) -> None:
        applied = None if found is None else found.events
        if found == self._known and self._events.interests == applied:
            return
        if found is None:
            _LOGGER.warning("worker interests unknown: publishing every event")
        else:
            _LOGGER.info(
                "worker interests applied",
                extra={"events": sorted(found.events), "groups": dict(found.versions)},
            )
        self._known = found
        self._events.interests = applied
        if self._tasks is not None:
            self._tasks.spawn(self.on_applied(), name="interests-acknowledged")

    # --- notifications ---------------------------------------------------------------------

    async def _follow(self) -> None:
        await pubsub.follow(
            self._redis,
            self._keys.interests_channel(),
            self._notified,
            on_up=self._subscribed_again,
            on_down=self._lost,
        )

    async def _subscribed_again(self) -> None:
        self._subscribed = True
        await self.refresh()  # whatever changed while it was down
        self._settled.set()

    def _lost(self, error: BaseException | None) -> None:
        self._subscribed = False
        if error is None:
            return  # stopped (the gateway closes): nothing to acknowledge any more
        _LOGGER.warning("interest notifications lost", extra={"error": repr(error)})
        self._apply(None)

    def _notified(self, _group: bytes | str) -> None:
        self.notifications += 1
        self._pending = True
        if (self._refreshing is None or self._refreshing.done()) and self._tasks is not None:
            self._refreshing = self._tasks.spawn(self._refresh_pending(), name="interests-read")

    async def _refresh_pending(self) -> None:
        while self._pending:
            self._pending = False
            await self.refresh()


async def _nothing() -> None:
    return None
