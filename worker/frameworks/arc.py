"""hikari-arc on a worker: ``arc.GatewayClient(bot)`` as arc documents it, made fit for replicas.

What arc does on a ``GatewayBot`` and what changes here:

* it subscribes to ``InteractionCreateEvent``, ``StartedEvent`` and ``StoppingEvent`` on
  ``bot.event_manager``: kept;
* on ``StartedEvent`` it fetches the application and, unless ``autosync=False``, overwrites
  Discord's command list: every replica would, so :func:`prepare` turns autosync off and
  ``python -m worker sync-commands`` registers arc's commands once per deploy
  (:func:`command_builders`);
* it runs each command in a task of its own and its listener returns at once: the worker
  would ack the message and end the 3 s guard (``worker.interactions``) before the command
  answers, so :func:`prepare` replaces that listener with one that awaits the command's task.

Cooldowns and concurrency limits shared by every replica: :class:`RedisLimiter` (an arc limiter
hook) and :class:`RedisConcurrencyLimiter` (an arc concurrency limiter).
"""

from __future__ import annotations

import asyncio
import logging
import typing

import arc
import hikari
from arc.internal import sync as arc_sync

from shared import clock as clock_module
from shared import redis_client
from worker.commands import cooldowns, model

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys

__all__: typing.Sequence[str] = (
    "RedisConcurrencyLimiter",
    "RedisLimiter",
    "check_compatibility",
    "clients",
    "command_builders",
    "prepare",
)

_LOGGER = logging.getLogger("shardline.worker.frameworks.arc")
AnyClient = arc.abc.Client[typing.Any]
#: What a scope's key is made of, for each scope arc's built-in limiters offer.
KeyOf = typing.Callable[[arc.Context[typing.Any]], int]


def check_compatibility() -> None:
    """Fail loudly when an arc upgrade moves what this module relies on."""
    if not hasattr(arc.GatewayClientBase, "_on_gatewaybot_interaction_create"):
        raise RuntimeError("arc's gateway client lost its listener; see worker/frameworks/arc.py")
    if "_autosync" not in arc.abc.Client.__slots__:
        raise RuntimeError("arc's client lost _autosync; see worker/frameworks/arc.py")
    if "_invoke_task" not in arc.abc.command.CallableCommandBase.__slots__:
        raise RuntimeError("arc's commands lost _invoke_task; see worker/frameworks/arc.py")
    if not hasattr(arc_sync, "_get_all_commands"):
        raise RuntimeError("arc.internal.sync lost _get_all_commands; see worker/frameworks/arc.py")


def clients(listeners: typing.Iterable[object]) -> list[arc.GatewayClientBase[typing.Any]]:
    """The arc gateway clients among the owners of ``listeners`` (bound methods)."""
    found: list[arc.GatewayClientBase[typing.Any]] = []
    for listener in listeners:
        owner = getattr(listener, "__self__", None)
        if isinstance(owner, arc.GatewayClientBase) and not any(owner is c for c in found):
            found.append(owner)
    return found


def prepare(client: arc.GatewayClientBase[typing.Any], events: hikari.api.EventManager) -> None:
    """Autosync off; commands awaited by the listener the worker runs."""
    if client._autosync:  # noqa: SLF001 - arc has no setter; checked by check_compatibility
        _LOGGER.info("arc autosync is off on workers: run `python -m worker sync-commands`")
        client._autosync = False  # noqa: SLF001 - ditto
    original = client._on_gatewaybot_interaction_create  # noqa: SLF001 - the listener arc subscribed
    if original not in events.get_listeners(hikari.InteractionCreateEvent):
        return  # prepared already
    events.unsubscribe(hikari.InteractionCreateEvent, original)

    async def on_arc_interaction(event: hikari.InteractionCreateEvent) -> None:
        interaction = event.interaction
        command: object = None
        if isinstance(interaction, hikari.CommandInteraction):
            find: typing.Callable[[hikari.CommandType, str], object] = client.find_command
            command = find(hikari.CommandType(interaction.command_type), interaction.command_name)
        before = getattr(command, "_invoke_task", None)
        await original(event)
        # arc keeps the task it started for this interaction on the (top-level) command; it
        # awaits nothing between starting it and returning, so no other invocation of the
        # command can have replaced it.
        task = getattr(command, "_invoke_task", None)
        if task is not None and task is not before:
            # asyncio.wait: a worker cancelling this listener leaves arc's command running,
            # as arc meant it to; the command's own failure is arc's to handle.
            await asyncio.wait({task})

    on_arc_interaction.__qualname__ = f"arc.{type(client).__qualname__}.on_interaction"
    events.subscribe(hikari.InteractionCreateEvent, on_arc_interaction)


def command_builders(client: AnyClient, guild_id: int | None) -> list[hikari.api.CommandBuilder]:
    """The builders of ``client``'s commands for one ``set_application_commands`` call: the
    global ones (those without guilds), or with ``guild_id`` every command, as Shardline's own
    ``--guild`` sync does."""
    mapping = arc_sync._get_all_commands(client)  # noqa: SLF001 - arc's own sync export
    arc_sync._process_localizations(client, mapping)  # noqa: SLF001 - ditto
    builders: list[hikari.api.CommandBuilder] = []
    for guild, by_type in mapping.items():
        if guild_id is None and guild is not None:
            continue
        for by_name in by_type.values():
            builders.extend(command._build() for command in by_name.values())  # noqa: SLF001
    return _unique(builders)


def _unique(builders: list[hikari.api.CommandBuilder]) -> list[hikari.api.CommandBuilder]:
    seen: set[tuple[int, str]] = set()
    kept = []
    for built in builders:
        key = (int(built.type), built.name)
        if key not in seen:
            seen.add(key)
            kept.append(built)
    return kept


_SCOPES: typing.Final[dict[str, KeyOf]] = {
    "user": lambda ctx: int(ctx.author.id),
    "channel": lambda ctx: int(ctx.channel_id),
    "guild": lambda ctx: int(ctx.guild_id or ctx.channel_id),
    "global": lambda _ctx: 0,
}


class RedisLimiter(arc.abc.LimiterProto[typing.Any]):
    """An arc limiter hook (``@arc.with_hook(RedisLimiter(...))``) whose uses are counted in
    Redis: ``limit`` uses per ``period`` seconds per ``scope`` (user, channel, guild, global)
    across every replica.

    arc's ``is_rate_limited`` and ``reset`` are synchronous and cannot ask Redis: the first
    answers what this replica last saw, the second forgets that and deletes the Redis key in
    a task of its own.
    """

    def __init__(
        self, redis: aioredis.Redis, redis_keys: keys.RedisKeys, name: str, period: float,
        limit: int, scope: str = "user", *, clock: clock_module.Clock | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._keys = redis_keys
        self._cooldowns = cooldowns.Cooldowns(redis, redis_keys, clock=clock)
        self._name = f"arc:{name}"
        self._cooldown = model.Cooldown(rate=limit, per=period, scope=scope)
        self._key_of = _SCOPES[scope]
        self._limited_until: dict[int, float] = {}
        self._tasks: set[asyncio.Task[typing.Any]] = set()

    async def __call__(self, ctx: arc.Context[typing.Any], /) -> arc.HookResult:
        key = self._key_of(ctx)
        try:
            wait = await self._cooldowns.take(self._name, self._cooldown, key)
        except redis_client.REDIS_ERRORS as exc:
            # Unknown is not a refusal: the command runs, unlimited while Redis is away.
            _LOGGER.warning("cooldown not checked", extra={"error": str(exc)})
            return arc.HookResult()
        if wait > 0:
            self._limited_until[key] = asyncio.get_running_loop().time() + wait
            raise arc.UnderCooldownError(
                typing.cast("typing.Any", self), wait, f"Command is under cooldown for {wait} s."
            )
        self._limited_until.pop(key, None)
        return arc.HookResult()

    def is_rate_limited(self, ctx: arc.Context[typing.Any], /) -> bool:
        until = self._limited_until.get(self._key_of(ctx))
        return until is not None and until > asyncio.get_running_loop().time()

    def reset(self, ctx: arc.Context[typing.Any], /) -> None:
        key = self._key_of(ctx)
        self._limited_until.pop(key, None)
        redis_key = self._keys.cooldown(self._name, f"{self._cooldown.scope}:{key}")
        _spawn(self._tasks, self._redis.delete(redis_key))


class RedisConcurrencyLimiter(arc.abc.ConcurrencyLimiterProto[typing.Any]):
    """At most ``limit`` runs at once per ``scope`` across every replica
    (``@arc.with_concurrency_limit(RedisConcurrencyLimiter(...))``).

    arc asks ``is_exhausted`` synchronously before ``acquire``: it answers False, and the slot
    is taken, or refused with arc's ``MaxConcurrencyReachedError``, in ``acquire``. arc's
    ``release`` is synchronous too (and called after a refused ``acquire`` as well): a slot
    this replica took is given back in a task of its own.
    """

    def __init__(
        self, redis: aioredis.Redis, redis_keys: keys.RedisKeys, name: str, limit: int,
        scope: str = "global",
    ) -> None:  # fmt: skip
        self._concurrency = cooldowns.Concurrency(redis, redis_keys)
        self._name = f"arc:{name}"
        self._limit = model.MaxConcurrency(limit=limit, scope=scope)
        self._key_of = _SCOPES[scope]
        self._held: set[int] = set()
        self._tasks: set[asyncio.Task[typing.Any]] = set()

    @property
    def limit(self) -> int:
        return self._limit.limit

    async def acquire(self, ctx: arc.Context[typing.Any], /) -> None:
        try:
            entered = await self._concurrency.enter(self._name, self._limit, self._key_of(ctx))
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning("concurrency not limited", extra={"error": str(exc)})
            return  # unknown is not a refusal: the command runs without a slot
        if not entered:
            raise arc.MaxConcurrencyReachedError(typing.cast("typing.Any", self), self.limit)
        self._held.add(id(ctx))

    def release(self, ctx: arc.Context[typing.Any], /) -> None:
        if id(ctx) not in self._held:
            return  # refused, or never acquired: nothing to give back
        self._held.discard(id(ctx))
        _spawn(self._tasks, self._concurrency.leave(self._name, self._limit, self._key_of(ctx)))

    def is_exhausted(self, ctx: arc.Context[typing.Any], /) -> bool:
        del ctx
        return False


def _spawn(tasks: set[asyncio.Task[typing.Any]], work: typing.Awaitable[typing.Any]) -> None:
    """Run ``work`` in a task kept alive by ``tasks``; a failure is logged, never lost."""

    async def run() -> None:
        try:
            await work
        except Exception:
            _LOGGER.exception("an arc limiter's Redis call failed")

    task = asyncio.get_running_loop().create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
