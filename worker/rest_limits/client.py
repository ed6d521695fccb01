"""hikari's REST client with the configured limiter under it.

:func:`build_client` is what the worker calls; :class:`LimitedRESTClient` tells the shared
limiter about every response, and :class:`DisabledBucketManager` stands in when a REST proxy
in front of Discord does the limiting (``REST_LIMITER=off``).
"""

from __future__ import annotations

import contextlib
import typing

import hikari
from hikari.impl import buckets, rest

from worker.rest_limits import shared_buckets

if typing.TYPE_CHECKING:
    import aiohttp
    import redis.asyncio as aioredis
    from hikari.internal import routes

    from shared import clock as clock_module
    from shared import keys

__all__: typing.Sequence[str] = (
    "DisabledBucketManager",
    "LimitedRESTClient",
    "build_client",
    "check_compatibility",
)


class DisabledBucketManager(buckets.RESTBucketManager):
    """``REST_LIMITER=off``: a REST proxy in front of Discord limits; nothing here does."""

    __slots__: typing.Sequence[str] = ()

    def acquire_bucket(
        self, compiled_route: routes.CompiledRoute, authentication: str | None
    ) -> typing.AsyncContextManager[None]:
        del compiled_route, authentication
        return contextlib.nullcontext()

    def update_rate_limits(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        del args, kwargs

    def throttle(self, retry_after: float) -> None:
        del retry_after


class LimitedRESTClient(rest.RESTClientImpl):
    """hikari's REST client, telling the shared limiter about every response."""

    __slots__: typing.Sequence[str] = ()

    @property
    def shared_limiter(self) -> shared_buckets.SharedBucketManager | None:
        """The limiter every replica shares (``None`` with ``REST_LIMITER=off``)."""
        manager = self._bucket_manager
        return manager if isinstance(manager, shared_buckets.SharedBucketManager) else None

    async def _parse_ratelimits(  # type: ignore[misc]  # final in hikari; see check_compatibility
        self,
        compiled_route: routes.CompiledRoute,
        authentication: str | None,
        response: aiohttp.ClientResponse,
    ) -> float | None:
        manager = self.shared_limiter
        held_back = False
        if manager is not None:
            held_back = await manager.observe(compiled_route, authentication, response)
        retry_after = await super()._parse_ratelimits(compiled_route, authentication, response)
        if held_back and retry_after:
            # The shared state holds the retry back until the bucket resets: it waits there,
            # on the limiter's clock, instead of in hikari's sleep as well.
            return 0.0
        return retry_after


def check_compatibility() -> None:
    """Fail loudly when a hikari upgrade moves the hooks this package relies on."""
    for name in ("_parse_ratelimits", "_request"):
        if not hasattr(rest.RESTClientImpl, name):
            raise RuntimeError(f"hikari's RESTClientImpl lost {name}; see worker/rest_limits/")
    for name in ("acquire_bucket", "update_rate_limits", "throttle"):
        if not hasattr(buckets.RESTBucketManager, name):
            raise RuntimeError(f"hikari's RESTBucketManager lost {name}; see worker/rest_limits/")


def build_client(
    *,
    token: str,
    api_url: str,
    entity_factory: hikari.api.EntityFactory,
    limiter: str,
    global_limit: int,
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    clock: clock_module.Clock | None = None,
) -> LimitedRESTClient:
    """hikari's REST client for the bot's token, with the configured limiter under it (on
    ``clock``, the real one unless given)."""
    manager: buckets.RESTBucketManager
    if limiter == "off":
        manager = DisabledBucketManager(max_rate_limit=300.0)
    else:
        manager = shared_buckets.SharedBucketManager(
            redis, redis_keys, global_limit=global_limit, clock=clock
        )
    return LimitedRESTClient(
        cache=None,
        entity_factory=entity_factory,
        executor=None,
        http_settings=hikari.impl.HTTPSettings(),
        proxy_settings=hikari.impl.ProxySettings(),
        token=token,
        token_type=hikari.TokenType.BOT,
        rest_url=api_url,
        bucket_manager=manager,
        bucket_manager_owner=True,
    )
