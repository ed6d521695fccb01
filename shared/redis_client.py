"""The Redis client every process uses, and what counts as Redis being unavailable."""

from __future__ import annotations

import asyncio
import typing

import redis.asyncio as aioredis
import redis.asyncio.client
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.exceptions

from shared import breaker as breaker_module
from shared import redis_target

if typing.TYPE_CHECKING:
    from shared import clock, secret

__all__: typing.Sequence[str] = (
    "REDIS_ERRORS",
    "GuardedRedis",
    "RedisBreakerOpen",
    "RedisDeadlineExceeded",
    "connect",
    "connect_guarded",
    "is_cluster",
    "text",
    "text_map",
)

#: Redis down, restarting or unreachable. ``redis.exceptions.ConnectionError`` is not the
#: builtin ``ConnectionError``, so catching only builtins lets these through.
REDIS_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    OSError,
    redis.exceptions.RedisError,
    # A cluster that lost a master before its replica took over, or none of whose nodes
    # answers; not RedisErrors. (Other cluster exceptions, such as keys of one transaction in
    # two slots, are bugs: raised.)
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
)


#: Connections per process. A burst beyond it waits for a free connection (up to
#: ``_POOL_WAIT`` seconds) instead of failing: redis-py's default pool raises
#: ``MaxConnectionsError`` at 100, which callers would take for Redis being down.
MAX_CONNECTIONS: typing.Final = 64
_T = typing.TypeVar("_T")
#: How long a cluster client's first command may wait for the topology (see
#: ``GuardedRedisCluster.ready``).
TOPOLOGY_WAIT: typing.Final = 5.0
_POOL_WAIT: typing.Final = 5.0


#: Every connection's timeouts: short, so that a Redis outage is noticed, not waited on.
_SOCKET_TIMEOUT: typing.Final = 5.0
_CONNECT_TIMEOUT: typing.Final = 2.0
_HEALTH_CHECK: typing.Final = 15


def connect(url: secret.Secret) -> aioredis.Redis:
    """A pooled client for whatever ``url`` names (``shared.redis_target``): one server, the
    master Sentinel points at now, or a Redis Cluster.

    A cluster client is :class:`redis.asyncio.cluster.RedisCluster`, which has the same
    commands, scripts, pipelines (transactions within one slot) and pub/sub as
    :class:`redis.asyncio.Redis` but is not a subclass of it; it is typed as ``Redis`` so that
    every caller keeps one type. What would break on a cluster (keys of one script or
    transaction in different slots) is ruled out by the key schema (``shared.keys``).
    """
    return _client(redis_target.parse(url.reveal()), aioredis.Redis, _ClusterClient)


class _ClusterClient(redis.asyncio.cluster.RedisCluster):
    """A cluster client (the unguarded one)."""


def _client(
    target: redis_target.RedisTarget,
    standalone: type[aioredis.Redis],
    cluster: type[redis.asyncio.cluster.RedisCluster],
) -> aioredis.Redis:
    if target.mode == redis_target.CLUSTER:
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.hosts]
        client: object = cluster(
            startup_nodes=nodes,
            username=target.username,
            password=target.password,
            ssl=target.tls,
            max_connections=MAX_CONNECTIONS,
            health_check_interval=_HEALTH_CHECK,
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=_CONNECT_TIMEOUT,
        )
        # Same commands; see connect().
        return typing.cast("aioredis.Redis", client)
    if target.mode == redis_target.SENTINEL:
        sentinel = redis.asyncio.sentinel.Sentinel(
            target.hosts,
            sentinel_kwargs={
                "password": target.sentinel_password,
                "socket_timeout": _SOCKET_TIMEOUT,
                "socket_connect_timeout": _CONNECT_TIMEOUT,
            },
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=_CONNECT_TIMEOUT,
        )
        # A failover closes the pool's connections to the old master; the next command asks
        # the sentinels where the master is now.
        return sentinel.master_for(  # type: ignore[no-any-return]  # redis-py's untyped
            target.master,
            redis_class=standalone,
            db=target.db,
            username=target.username,
            password=target.password,
            ssl=target.tls,
            health_check_interval=_HEALTH_CHECK,
        )
    return standalone.from_pool(
        aioredis.BlockingConnectionPool.from_url(
            target.url,
            max_connections=MAX_CONNECTIONS,
            timeout=_POOL_WAIT,
            health_check_interval=_HEALTH_CHECK,
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=_CONNECT_TIMEOUT,
        )
    )


class RedisBreakerOpen(breaker_module.BreakerOpen, redis.exceptions.ConnectionError):
    """Refused at once by the breaker: every ``except REDIS_ERRORS`` fallback applies."""


class RedisDeadlineExceeded(breaker_module.DeadlineExceeded, redis.exceptions.TimeoutError):
    """Redis did not answer within the breaker's deadline."""


def _is_outage(exc: BaseException) -> bool:
    """No answer (a reply such as ``WRONGTYPE`` or ``NOSCRIPT`` is one, and does not count)."""
    return isinstance(
        exc,
        OSError
        | redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | redis.exceptions.ClusterDownError
        | redis.exceptions.SlotNotCoveredError
        | redis.exceptions.RedisClusterUnreachableError,
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


class GuardedClusterPipeline(redis.asyncio.cluster.ClusterPipeline):
    """A cluster pipeline whose ``execute`` goes through its client's breaker."""

    breaker: breaker_module.CircuitBreaker

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[typing.Any]:
        await typing.cast("GuardedRedisCluster", self.cluster_client).ready()
        run = redis.asyncio.cluster.ClusterPipeline.execute
        return await _guarded(self.breaker, lambda: run(self, raise_on_error, allow_redirections))


class GuardedRedisCluster(redis.asyncio.cluster.RedisCluster):
    """:class:`GuardedRedis` on a Redis Cluster: the same breaker over every command, script
    and pipeline (a redirection or a failover retried inside redis-py counts as one call)."""

    breaker: breaker_module.CircuitBreaker
    _ready: bool = False

    async def ready(self) -> None:
        """Learn the cluster's topology (CLUSTER SLOTS, a connection per node) on the first
        call, outside the breaker's deadline (on a loaded machine it takes longer than a
        command should) but within :data:`TOPOLOGY_WAIT`. Only the first call waits so: if it
        fails, later commands learn the topology inside redis-py, within the breaker's
        deadline, so a cluster down at start costs the hot path no more than a deadline. A
        failure raises a ``redis.exceptions.ConnectionError`` (one of :data:`REDIS_ERRORS`: the
        callers' fallbacks apply)."""
        if self._ready:
            return
        self._ready = True
        try:
            await asyncio.wait_for(self.initialize(), TOPOLOGY_WAIT)
        except (TimeoutError, redis.exceptions.RedisClusterException) as exc:
            msg = f"Redis Cluster topology not learnt: {type(exc).__name__}"
            raise redis.exceptions.ConnectionError(msg) from None

    async def execute_command(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        await self.ready()
        run = redis.asyncio.cluster.RedisCluster.execute_command
        return await _guarded(self.breaker, lambda: run(self, *args, **kwargs))

    def pipeline(
        self, transaction: typing.Any | None = None, shard_hint: typing.Any | None = None
    ) -> GuardedClusterPipeline:
        if shard_hint:
            msg = "shard_hint is not supported in cluster mode"
            raise redis.exceptions.RedisClusterException(msg)
        pipe = GuardedClusterPipeline(self, transaction)  # type: ignore[abstract]  # redis-py declares it abstract yet instantiates it
        pipe.breaker = self.breaker
        return pipe


def connect_guarded(
    url: secret.Secret, *, clock: clock.Clock, deadline: float = breaker_module.DEADLINE
) -> GuardedRedis:
    """A pooled client (one server, Sentinel or a Cluster, as :func:`connect`) whose every call
    has ``deadline`` and goes through a breaker named ``redis`` (its state:
    ``client.breaker.state``)."""
    # A GuardedRedisCluster has the same commands and ``breaker``; see connect().
    client = typing.cast(
        "GuardedRedis",
        _client(redis_target.parse(url.reveal()), GuardedRedis, GuardedRedisCluster),
    )
    client.breaker = breaker_module.CircuitBreaker(
        "redis", clock=clock, deadline=deadline, is_failure=_is_outage
    )
    return client


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster (where a multi-key command must stay within
    one slot, and SCAN walks one node at a time)."""
    return isinstance(client, redis.asyncio.cluster.RedisCluster)


def text(value: object) -> str:
    """A Redis reply as text: the client answers bytes (``decode_responses`` is off, for the
    cache's packed values); what Shardline stores as names and ids is UTF-8."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_map(raw: typing.Mapping[typing.Any, typing.Any]) -> dict[str, str]:
    """A Redis hash (``HGETALL``) as text keys and values."""
    return {text(key): text(value) for key, value in raw.items()}
