"""Change notification: every write tells every replica ``{kind}:{id}:{rev}``, and each drops
its older copy.

A write returns once its own replica has received its invalidation back: Redis sends a
publication to every subscriber before serving anything else, so by then every replica has it
in its socket. While the subscription is down the replica's copies are discarded and not
trusted; when it is back, what writes could not store in Redis meanwhile is pushed again.
"""

from __future__ import annotations

import asyncio
import logging
import typing

from shared import pubsub, redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys
    from shared.settings import cache, mongo

__all__: typing.Sequence[str] = ("Invalidations",)

_LOGGER = logging.getLogger("shardline.settings")
#: How long a write waits for its own invalidation to come back before it answers anyway.
_ECHO_TIMEOUT: typing.Final = 0.5


class Invalidations:
    """Publishes this replica's writes and follows everyone's."""

    def __init__(
        self,
        redis: aioredis.Redis | None,
        redis_keys: keys.RedisKeys,
        local: cache.ReplicaCopies,
        shared: cache.RedisCopies,
    ) -> None:
        self._redis = redis
        self._keys = redis_keys
        self._local = local
        self._shared = shared
        self._echoes: dict[str, asyncio.Future[None]] = {}
        #: Set while the subscription is up.
        self.subscribed = asyncio.Event()

    async def follow(self) -> None:
        """Drop local copies other replicas made stale; trust none while not subscribed."""
        assert self._redis is not None
        await pubsub.follow(
            self._redis,
            self._keys.settings_channel(),
            self._invalidate,
            on_up=self._subscription_up,
            on_down=self._subscription_down,
        )

    async def publish(self, key: cache.Key, doc: mongo.Document) -> None:
        """Store the new copy and return once Redis has sent the invalidation to every
        replica: this replica's own subscription receiving it proves that (Redis writes a
        publication to all subscribers before it serves anything else)."""
        kind_name, entity = key
        message = f"{kind_name}:{entity}:{int(doc.get('rev', 0))}"
        echo = None
        if self._local.trusted:
            echo = self._echoes[message] = asyncio.get_running_loop().create_future()
        try:
            await self._shared.put(key, doc, publish=True)
            if echo is not None:
                await asyncio.wait_for(echo, timeout=_ECHO_TIMEOUT)
        except TimeoutError:
            _LOGGER.warning("settings invalidation not echoed in time", extra={"what": message})
        finally:
            self._echoes.pop(message, None)

    async def _subscription_up(self) -> None:
        self._local.clear()  # whatever was missed while away
        self._local.trusted = True
        self.subscribed.set()
        await self._shared.repair()

    def _subscription_down(self, exc: BaseException | None) -> None:
        if exc is not None and self._local.trusted:
            _LOGGER.warning(
                "settings invalidations lost: reading through Redis and MongoDB",
                extra={"error": str(exc)},
            )
        self._local.trusted = False
        self.subscribed.clear()
        self._local.clear()

    def _invalidate(self, data: bytes | str) -> None:
        text = redis_client.text(data)
        try:
            kind, entity, rev = text.rsplit(":", 2)
            key = (kind, int(entity))
            newer = int(rev)
        except ValueError:
            return
        self._local.drop_older(key, newer)
        echo = self._echoes.pop(text, None)
        if echo is not None and not echo.done():
            echo.set_result(None)
