"""hikari-tanjun on a worker: ``tanjun.Client.from_gateway_bot(bot)`` as tanjun documents it,
made fit for replicas.

What tanjun does on a ``GatewayBot`` and what changes here:

* it opens on ``StartingEvent`` (subscribing its message and interaction listeners then) and
  closes on ``StoppingEvent``: kept;
* ``declare_global_commands=True`` declares the commands when each replica opens: the
  declarers are removed by :func:`prepare` and ``python -m worker sync-commands`` registers
  tanjun's commands once per deploy (:func:`command_builders`). tanjun's own declaring reads
  ``CommandBuilder.is_dm_enabled``, which hikari 2.7 no longer has;
* ``from_gateway_bot`` takes ``bot.cache`` as a ``hikari.api.Cache``, whose getters tanjun
  calls synchronously; the worker's cache is in Redis and asynchronous, so tanjun is given
  none and falls back to REST, as on a cacheless bot;
* tanjun answers an application command none of its components has with "Command not
  found": beside another framework (a bot migrating) that would answer the other's commands,
  so :func:`prepare` turns that reply off when tanjun is not alone.

Cooldowns and concurrency limits shared by every replica: :class:`RedisCooldownManager` and
:class:`RedisConcurrencyLimiter`, tanjun's own pluggable interfaces backed by Redis.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing
import warnings

import hikari

from shared import clock as clock_module
from shared import redis_client
from worker.commands import cooldowns, model
from worker.frameworks import tanjun_cache

with warnings.catch_warnings():
    # tanjun 2.17.7 subclasses alluka's deprecated BasicContext at import.
    warnings.simplefilter("ignore", DeprecationWarning)
    import tanjun
    from tanjun import clients as tanjun_clients
    from tanjun._internal import localisation as tanjun_localisation

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys
    from shared.cache import reader

__all__: typing.Sequence[str] = (
    "RedisConcurrencyLimiter",
    "RedisCooldownManager",
    "check_compatibility",
    "clients",
    "command_builders",
    "prepare",
)

_LOGGER = logging.getLogger("shardline.worker.frameworks.tanjun")
_ANYWHERE: typing.Final = (
    hikari.ApplicationContextType.GUILD,
    hikari.ApplicationContextType.BOT_DM,
    hikari.ApplicationContextType.PRIVATE_CHANNEL,
)


def check_compatibility() -> None:
    """Fail loudly when a tanjun upgrade moves what this module relies on."""
    if not hasattr(tanjun_clients, "_StartDeclarer"):
        raise RuntimeError("tanjun lost _StartDeclarer; see worker/frameworks/tanjun.py")
    if "_cache" not in tanjun.Client.__slots__:
        raise RuntimeError("tanjun's client lost _cache; see worker/frameworks/tanjun.py")
    if not hasattr(tanjun_localisation, "localise_command"):
        raise RuntimeError("tanjun lost localise_command; see worker/frameworks/tanjun.py")


def clients(listeners: typing.Iterable[object]) -> list[tanjun.Client]:
    """The tanjun clients among the owners of ``listeners`` (bound methods)."""
    found: list[tanjun.Client] = []
    for listener in listeners:
        owner = getattr(listener, "__self__", None)
        if isinstance(owner, tanjun.Client) and not any(owner is c for c in found):
            found.append(owner)
    return found


def prepare(
    client: tanjun.Client,
    *,
    alone: bool,
    cache: reader.CacheReader | None = None,
    me: typing.Callable[[], hikari.OwnUser | None] | None = None,
) -> None:
    """No declaring at start, no synchronous cache (the Redis ``cache`` through tanjun's async
    cache interfaces instead, with ``me`` the bot's own user), no "Command not found" beside
    others."""
    starting = tanjun.ClientCallbackNames.STARTING
    for callback in list(client.get_client_callbacks(starting)):
        if isinstance(callback, tanjun_clients._StartDeclarer):  # noqa: SLF001 - checked above
            _LOGGER.info("tanjun's command declaring is off on workers: run sync-commands")
            client.remove_client_callback(starting, callback)
    given: object = client.cache  # typed hikari.api.Cache; on a worker it is not one
    if given is not None and not isinstance(given, hikari.api.Cache):
        client._cache = None  # noqa: SLF001 - from_gateway_bot has no way to decline the cache
        client.remove_type_dependency(hikari.api.Cache)
        client.remove_type_dependency(type(given))
    if cache is not None and me is not None:
        tanjun_cache.add_to_client(client, cache, me)
    if not alone:
        client.set_interaction_not_found(None)


def command_builders(
    client: tanjun.Client, guild_id: int | None
) -> list[hikari.api.CommandBuilder]:
    """The builders of ``client``'s commands, as ``declare_global_commands`` would make them:
    the global ones, or with ``guild_id`` every command (as Shardline's ``--guild`` sync)."""
    global_only = guild_id is None
    localiser = client.injector.get_type_dependency(
        tanjun.dependencies.AbstractLocaliser,  # type: ignore[type-abstract] # tanjun's key type
        default=None,
    )
    builders: list[hikari.api.CommandBuilder] = []
    commands: list[tanjun.abc.AppCommand[typing.Any]] = [
        *client.iter_slash_commands(global_only=global_only),
        *client.iter_menu_commands(global_only=global_only),
    ]
    for command in commands:
        built = command.build()
        if built.default_member_permissions is hikari.UNDEFINED:
            built.set_default_member_permissions(client.default_app_cmd_permissions)
        if built.context_types is hikari.UNDEFINED:
            dms = command.is_dm_enabled
            dms = client.dms_enabled_for_app_cmds if dms is None else dms
            built.set_context_types(_ANYWHERE if dms else (hikari.ApplicationContextType.GUILD,))
        if localiser is not None:
            tanjun_localisation.localise_command(built, localiser)
        builders.append(built)
    return builders


_BucketTarget = tuple[str, int]


def _target(resource: tanjun.BucketResource, ctx: tanjun.abc.Context) -> _BucketTarget:
    """The scope (one of Shardline's) and id a tanjun bucket resource limits."""
    if resource is tanjun.BucketResource.USER:
        return "user", int(ctx.author.id)
    if resource is tanjun.BucketResource.MEMBER:
        # Per member of a guild (per DM outside one): the user scope within the guild's name.
        return f"user:{ctx.guild_id or ctx.channel_id}", int(ctx.author.id)
    if resource is tanjun.BucketResource.CHANNEL:
        return "channel", int(ctx.channel_id)
    if resource is tanjun.BucketResource.GUILD:
        return "guild", int(ctx.guild_id or ctx.channel_id)
    return "global", 0


_SUPPORTED: typing.Final = frozenset(
    {
        tanjun.BucketResource.USER,
        tanjun.BucketResource.MEMBER,
        tanjun.BucketResource.CHANNEL,
        tanjun.BucketResource.GUILD,
        tanjun.BucketResource.GLOBAL,
    }
)


def _checked(resource: tanjun.BucketResource) -> tanjun.BucketResource:
    if resource not in _SUPPORTED:
        raise ValueError(
            f"{resource.name} buckets are not kept in Redis (they need a channel or role "
            "lookup); use USER, MEMBER, CHANNEL, GUILD or GLOBAL"
        )
    return resource


class RedisCooldownManager(tanjun.dependencies.AbstractCooldownManager):
    """tanjun's cooldowns, counted in Redis across every replica.

    Used as tanjun's ``InMemoryCooldownManager`` is: ``set_bucket(...)`` then
    ``add_to_client(client)``; commands opt in with ``tanjun.with_cooldown("bucket")``. A use
    counts from the moment it is acquired (tanjun's in-memory manager counts from release).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        *,
        clock: clock_module.Clock | None = None,
    ) -> None:
        self._clock = clock or clock_module.SystemClock()
        self._cooldowns = cooldowns.Cooldowns(redis, redis_keys, clock=self._clock)
        #: A bucket's limit, or None for a disabled bucket (never limited).
        self._buckets: dict[str, tuple[tanjun.BucketResource, int, float] | None] = {}
        #: tanjun's own default for a bucket nobody set: 2 uses per 5 s per user.
        self._default: tuple[tanjun.BucketResource, int, float] | None = (
            tanjun.BucketResource.USER, 2, 5.0,
        )  # fmt: skip
        self._acquired: set[tuple[str, int]] = set()

    def add_to_client(self, client: tanjun.Client, /) -> None:
        client.set_type_dependency(
            tanjun.dependencies.AbstractCooldownManager,  # type: ignore[type-abstract] # tanjun's key
            self,
        )

    def set_bucket(
        self, bucket_id: str, resource: tanjun.BucketResource, limit: int,
        reset_after: float | dt.timedelta, /,
    ) -> typing.Self:  # fmt: skip
        seconds = (
            reset_after.total_seconds()
            if isinstance(reset_after, dt.timedelta)
            else float(reset_after)
        )
        if seconds <= 0 or limit <= 0:
            raise ValueError("limit and reset_after must be greater than 0")
        self._buckets[bucket_id] = (_checked(resource), limit, seconds)
        if bucket_id == "default":
            self._default = self._buckets[bucket_id]
        return self

    def disable_bucket(self, bucket_id: str, /) -> typing.Self:
        self._buckets[bucket_id] = None
        if bucket_id == "default":
            self._default = None
        return self

    async def try_acquire(self, bucket_id: str, ctx: tanjun.abc.Context, /) -> None:
        bucket = self._buckets.get(bucket_id, self._default)
        if bucket is None:
            return
        resource, limit, per = bucket
        scope, scope_id = _target(resource, ctx)
        cooldown = model.Cooldown(rate=limit, per=per, scope=scope.partition(":")[0])
        name = f"tanjun:{bucket_id}" + (f":{scope.partition(':')[2]}" if ":" in scope else "")
        try:
            wait = await self._cooldowns.take(name, cooldown, scope_id)
        except redis_client.REDIS_ERRORS as exc:
            # Unknown is not a refusal: the command runs, unlimited while Redis is away.
            _LOGGER.warning("cooldown not checked", extra={"error": str(exc)})
            return
        if wait > 0:
            until = dt.datetime.fromtimestamp(self._clock.now_ms() / 1000 + wait, tz=dt.UTC)
            raise tanjun.dependencies.CooldownDepleted(until)
        self._acquired.add((bucket_id, id(ctx)))

    async def release(self, bucket_id: str, ctx: tanjun.abc.Context, /) -> None:
        try:
            self._acquired.remove((bucket_id, id(ctx)))
        except KeyError:
            raise tanjun.dependencies.ResourceNotTracked from None

    async def check_cooldown(
        self, bucket_id: str, ctx: tanjun.abc.Context, /, *, increment: bool = False
    ) -> dt.datetime | None:
        """tanjun's deprecated interface: acquire and release at once."""
        if not increment:
            return None  # asking Redis without counting a use is not offered
        try:
            await self.try_acquire(bucket_id, ctx)
        except tanjun.dependencies.CooldownDepleted as exc:
            return exc.wait_until
        await self.release(bucket_id, ctx)
        return None


class RedisConcurrencyLimiter(tanjun.dependencies.AbstractConcurrencyLimiter):
    """tanjun's concurrency limits, held in Redis across every replica:
    ``set_bucket(...)``, ``add_to_client(client)``, ``tanjun.with_concurrency_limit("bucket")``.
    A replica that dies mid-command leaves its slot taken at most the slot's TTL."""

    def __init__(self, redis: aioredis.Redis, redis_keys: keys.RedisKeys) -> None:
        self._concurrency = cooldowns.Concurrency(redis, redis_keys)
        self._buckets: dict[str, tuple[tanjun.BucketResource, int] | None] = {}
        #: tanjun's own default for a bucket nobody set: one run at a time per user.
        self._default: tuple[tanjun.BucketResource, int] | None = (tanjun.BucketResource.USER, 1)
        self._held: dict[tuple[str, int], tuple[str, model.MaxConcurrency, int]] = {}

    def add_to_client(self, client: tanjun.Client, /) -> None:
        client.set_type_dependency(
            tanjun.dependencies.AbstractConcurrencyLimiter,  # type: ignore[type-abstract] # ditto
            self,
        )

    def set_bucket(
        self, bucket_id: str, resource: tanjun.BucketResource, limit: int, /
    ) -> typing.Self:
        if limit <= 0:
            raise ValueError("limit must be greater than 0")
        self._buckets[bucket_id] = (_checked(resource), limit)
        if bucket_id == "default":
            self._default = self._buckets[bucket_id]
        return self

    def disable_bucket(self, bucket_id: str, /) -> typing.Self:
        self._buckets[bucket_id] = None
        if bucket_id == "default":
            self._default = None
        return self

    async def try_acquire(self, bucket_id: str, ctx: tanjun.abc.Context, /) -> None:
        bucket = self._buckets.get(bucket_id, self._default)
        if bucket is None:
            return
        resource, limit = bucket
        scope, scope_id = _target(resource, ctx)
        held = model.MaxConcurrency(limit=limit, scope=scope.partition(":")[0])
        name = f"tanjun:{bucket_id}" + (f":{scope.partition(':')[2]}" if ":" in scope else "")
        try:
            entered = await self._concurrency.enter(name, held, scope_id)
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning("concurrency not limited", extra={"error": str(exc)})
            return  # unknown is not a refusal: the command runs without a slot
        if not entered:
            raise tanjun.dependencies.ResourceDepleted
        self._held[bucket_id, id(ctx)] = (name, held, scope_id)

    async def release(self, bucket_id: str, ctx: tanjun.abc.Context, /) -> None:
        slot = self._held.pop((bucket_id, id(ctx)), None)
        if slot is None:
            raise tanjun.dependencies.ResourceNotTracked
        name, held, scope_id = slot
        try:
            await self._concurrency.leave(name, held, scope_id)
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning("slot not given back", extra={"error": str(exc)})
