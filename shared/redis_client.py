"""The Redis client every process uses, and what counts as Redis being unavailable."""

from __future__ import annotations

import typing

import redis.asyncio as aioredis
import redis.asyncio.client
import redis.exceptions

from shared import breaker as breaker_module

if typing.TYPE_CHECKING:
    from shared import clock, secret

__all__: typing.Sequence[str] = (
    "REDIS_ERRORS",
    "GuardedRedis",
    "RedisBreakerOpen",
    "RedisDeadlineExceeded",
    "connect",
    "connect_guarded",
    "text",
    "text_map",
)

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
_T = typing.TypeVar("_T")
_POOL_WAIT: typing.Final = 5.0


def connect(url: secret.Secret) -> aioredis.Redis:
    """A pooled client; short timeouts so that a Redis outage is noticed, not waited on."""
    return aioredis.Redis.from_pool(_pool(url))


def _pool(url: secret.Secret) -> aioredis.BlockingConnectionPool:
    return aioredis.BlockingConnectionPool.from_url(
        url.reveal(),
        max_connections=MAX_CONNECTIONS,
        timeout=_POOL_WAIT,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=15,
    )


class RedisBreakerOpen(breaker_module.BreakerOpen, redis.exceptions.ConnectionError):
    """Refused at once by the breaker: every ``except REDIS_ERRORS`` fallback applies."""


class RedisDeadlineExceeded(breaker_module.DeadlineExceeded, redis.exceptions.TimeoutError):
    """Redis did not answer within the breaker's deadline."""


def _is_outage(exc: BaseException) -> bool:
    """No answer (a reply such as ``WRONGTYPE`` or ``NOSCRIPT`` is one, and does not count)."""
    return isinstance(
        exc, OSError | redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
    )


async def _guarded(
    breaker: breaker_module.CircuitBreaker, function: typing.Callable[[], typing.Awaitable[_T]]
) -> _T:
    try:
        return await breaker.call(function)
    except breaker_module.BreakerOpen as exc:
        raise RedisBreakerOpen(str(exc)) from None
    except breaker_module.DeadlineExceeded as exc:
        raise RedisDeadlineExceeded(str(exc)) from None


class GuardedPipeline(redis.asyncio.client.Pipeline):
    """A pipeline whose ``execute`` goes through its client's breaker."""

    breaker: breaker_module.CircuitBreaker

    async def execute(self, raise_on_error: bool = True) -> list[typing.Any]:
        run = redis.asyncio.client.Pipeline.execute
        return await _guarded(self.breaker, lambda: run(self, raise_on_error))


class GuardedRedis(aioredis.Redis):
    """Every command, script and pipeline through one :class:`~shared.breaker.CircuitBreaker`:
    each has a deadline, and while the breaker is open each fails at once with an error
    that is one of :data:`REDIS_ERRORS`, so the callers' fallbacks apply unchanged.
    (Pub/sub connections are long-lived and not guarded.)"""

    breaker: breaker_module.CircuitBreaker

    async def execute_command(self, *args: typing.Any, **options: typing.Any) -> typing.Any:
        run = aioredis.Redis.execute_command
        return await _guarded(
            self.breaker,
            lambda: run(self, *args, **options),  # type: ignore[no-untyped-call]  # redis-py's
        )

    def pipeline(
        self,
        transaction: bool = True,
        shard_hint: str | None = None,
    ) -> GuardedPipeline:
        pipe = GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.breaker = self.breaker
        return pipe


def connect_guarded(
    url: secret.Secret, *, clock: clock.Clock, deadline: float = breaker_module.DEADLINE
) -> GuardedRedis:
    """A pooled client whose every call has ``deadline`` and goes through a breaker named
    ``redis`` (its state: ``client.breaker.state``)."""
    client = typing.cast("GuardedRedis", GuardedRedis.from_pool(_pool(url)))
    client.breaker = breaker_module.CircuitBreaker(
        "redis", clock=clock, deadline=deadline, is_failure=_is_outage
    )
    return client


def text(value: object) -> str:
    """A Redis reply as text: the client answers bytes (``decode_responses`` is off, for the
    cache's packed values); what Shardline stores as names and ids is UTF-8."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_map(raw: typing.Mapping[typing.Any, typing.Any]) -> dict[str, str]:
    """A Redis hash (``HGETALL``) as text keys and values."""
    return {text(key): text(value) for key, value in raw.items()}
