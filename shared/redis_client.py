"""The Redis client every process uses, and what counts as Redis being unavailable."""

from __future__ import annotations

import typing

import redis.asyncio as aioredis
import redis.exceptions

if typing.TYPE_CHECKING:
    from shared import secret

__all__: typing.Sequence[str] = ("REDIS_ERRORS", "connect")

#: Redis down, restarting or unreachable. ``redis.exceptions.ConnectionError`` is not the
#: builtin ``ConnectionError``, so catching only builtins lets these through.
REDIS_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    OSError,
    redis.exceptions.RedisError,
)


def connect(url: secret.Secret) -> aioredis.Redis:
    """A pooled client; short timeouts so that a Redis outage is noticed, not waited on."""
    return aioredis.Redis.from_url(
        url.reveal(),
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=15,
    )
