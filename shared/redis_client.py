"""The Redis client every process uses, and what counts as Redis being unavailable."""

from __future__ import annotations

import typing

import redis.asyncio as aioredis
import redis.exceptions

if typing.TYPE_CHECKING:
    from shared import secret

__all__: typing.Sequence[str] = ("REDIS_ERRORS", "connect", "text", "text_map")

#: Redis down, restarting or unreachable. ``redis.exceptions.ConnectionError`` is not the
#: builtin ``ConnectionError``, so catching only builtins lets these through.
REDIS_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    OSError,
    redis.exceptions.RedisError,
)


#: Connections per process. A burst beyond it waits for a free connection (up to
#: ``_POOL_WAIT`` seconds) instead of failing: redis-py's default pool raises
#: ``MaxConnectionsError`` at 100, which callers would take for Redis being down.
MAX_CONNECTIONS: typing.Final = 64
_POOL_WAIT: typing.Final = 5.0


def connect(url: secret.Secret) -> aioredis.Redis:
    """A pooled client; short timeouts so that a Redis outage is noticed, not waited on."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url.reveal(),
        max_connections=MAX_CONNECTIONS,
        timeout=_POOL_WAIT,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=15,
    )
    return aioredis.Redis.from_pool(pool)


def text(value: object) -> str:
    """A Redis reply as text: the client answers bytes (``decode_responses`` is off, for the
    cache's packed values); what Shardline stores as names and ids is UTF-8."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_map(raw: typing.Mapping[typing.Any, typing.Any]) -> dict[str, str]:
    """A Redis hash (``HGETALL``) as text keys and values."""
    return {text(key): text(value) for key, value in raw.items()}
