"""What bot code sees: an app that reads like hikari's.

::

    bot = Bot()

    @bot.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if event.content == "!ping":
            await event.message.respond("pong")      # event.app.rest is hikari's REST client

Events are hikari's own types, built by hikari's factories; ``event.shard`` and
``bot.shard_for(guild_id)`` are remote shards whose commands go to the gateway holding them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import typing

import hikari
from hikari.impl import entity_factory, event_factory

from shared import config, sharding
from worker import commands, cpu, event_view, remote_shard, services, voice
from worker import events as worker_events
from worker import interactions as deadline
from worker.commands import cooldowns as command_cooldowns
from worker.commands import prompts as command_prompts

if typing.TYPE_CHECKING:
    import concurrent.futures
    import datetime as dt

    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc
    from hikari.api import event_manager as event_manager_api

    from shared import keys as keys_module
    from shared import settings as settings_store
    from shared import status as gateway_status
    from shared.cache import reader
    from worker.commands import model as command_model

_LOGGER = logging.getLogger("shardline.worker.bot")

T = typing.TypeVar("T", bound=hikari.Event)
V = typing.TypeVar("V")


def _started(value: V | None, what: str) -> V:
    if value is None:
        raise RuntimeError(
            f"{what} exists once the worker has started (a plugin's setup(bot) runs after that)"
        )
    return value


class Bot:
    """The worker-side app: listeners, REST, cache and remote shards.

    Listening is hikari's: ``bot.event_manager`` *is* a hikari ``EventManager``, and
    ``listen``, ``subscribe``, ``unsubscribe``, ``get_listeners``, ``wait_for``, ``stream`` and
    ``dispatch`` are ``GatewayBot``'s (see :class:`worker.events.WorkerEventManager` for what
    reaches this replica). ``rest``, ``cache``, ``settings``, ``redis`` and ``keys`` exist once
    the worker has started (a plugin's ``setup`` runs after that) and raise ``RuntimeError``
    before.
    """

    def __init__(self) -> None:
        #: What hikari's events and models hold as ``app``: this bot, with the synchronous
        #: cache of the event being handled (``event.get_guild()`` ...; see worker/event_view).
        self.app = event_view.EventApp(self)
        self._entity_factory = entity_factory.EntityFactoryImpl(self.app)
        self._event_factory = event_factory.EventFactoryImpl(self.app)
        self._event_manager = worker_events.WorkerEventManager(
            self._entity_factory, self._event_factory
        )
        self._rest: deadline.InteractionAwareRest | None = None
        self._cache: reader.CacheReader | None = None
        self._settings: settings_store.SettingsStore | None = None
        self._redis: aioredis.Redis | None = None
        self._keys: keys_module.RedisKeys | None = None
        self._me: hikari.OwnUser | None = None
        self._alive = False
        self._latencies: dict[int, float] = {}
        #: The gateway events this replica's queue binds (None before it knows).
        self._bound: frozenset[str] | None = None
        self._unbound_said: set[type[hikari.Event]] = set()
        #: Slash and prefix commands (``@bot.command(...)``).
        self.commands = commands.CommandRouter(self)
        #: Services (run once across the pool, callable from anywhere), schedules, fleet
        #: requests, and a process pool for CPU-bound work.
        self.services = services.Services()
        self.schedules = services.Schedules()
        self.fleet = services.Fleet()
        self.cpu = cpu.CpuPool()
        #: Lavalink players and events (when LAVALINK_URL is set).
        self.voice = voice.Voice(self)
        self._channel: pika_abc.AbstractChannel | None = None
        self._command_replies: remote_shard.CommandReplies | None = None
        self._pool = "main"
        self._namespace = "shardline"
        #: The pool's shard count, as the last event this replica took said.
        self.shard_count = 1
        #: The intents the gateways identify with (``INTENTS``; the worker app sets it).
        self.intents = hikari.Intents(config.DEFAULT_INTENTS)

    # --- what hikari models and frameworks ask of their app ---------------------------------

    @property
    def rest(self) -> hikari.api.RESTClient:
        return typing.cast("hikari.api.RESTClient", _started(self._rest, "bot.rest"))

    @property
    def interactions(self) -> deadline.InteractionAwareRest:
        return _started(self._rest, "bot.rest")

    @property
    def cache(self) -> reader.CacheReader:
        """The shared cache in Redis (asynchronous: ``await bot.cache.get_member(...)``)."""
        return _started(self._cache, "bot.cache")

    @property
    def settings(self) -> settings_store.SettingsStore:
        """Guild and user settings and infractions (MongoDB, cached across replicas)."""
        return _started(self._settings, "bot.settings")

    @property
    def redis(self) -> aioredis.Redis:
        """The pool's Redis, for plugins that keep shared state (with :attr:`keys`)."""
        return _started(self._redis, "bot.redis")

    @property
    def keys(self) -> keys_module.RedisKeys:
        """The pool's Redis key schema."""
        return _started(self._keys, "bot.keys")

    @property
    def event_manager(self) -> worker_events.WorkerEventManager:
        """hikari's event manager: what frameworks subscribe to and dispatch through."""
        return self._event_manager

    @property
    def events(self) -> worker_events.WorkerEventManager:
        """The event manager, by the name the consumer uses."""
        return self._event_manager

    @property
    def entity_factory(self) -> entity_factory.EntityFactoryImpl:
        return self._entity_factory

    @property
    def event_factory(self) -> event_factory.EventFactoryImpl:
        return self._event_factory

    @property
    def executor(self) -> concurrent.futures.Executor | None:
        """None, as hikari's default: CPU-bound work goes to ``bot.cpu``."""
        return None

    @property
    def http_settings(self) -> hikari.impl.HTTPSettings:
        return hikari.impl.HTTPSettings()

    @property
    def proxy_settings(self) -> hikari.impl.ProxySettings:
        return hikari.impl.ProxySettings()

    @property
    def is_alive(self) -> bool:
        """True from the start of the worker (before ``StartingEvent``) until it has closed."""
        return self._alive

    @property
    def shards(self) -> remote_shard.RemoteShards:
        """Every shard of the pool by id, each a remote shard (a worker holds none itself)."""
        return remote_shard.RemoteShards(self.remote_shard, lambda: self.shard_count)

    @property
    def heartbeat_latencies(self) -> typing.Mapping[int, float]:
        """Each shard's heartbeat round trip (seconds) as its gateway last reported it (every
        few seconds), ``nan`` before its first ACK; shards no gateway serves are absent."""
        return dict(self._latencies)

    @property
    def heartbeat_latency(self) -> float:
        """The mean of :attr:`heartbeat_latencies` known, ``nan`` when none is."""
        known = [value for value in self._latencies.values() if not math.isnan(value)]
        return sum(known) / len(known) if known else math.nan

    def observe_gateways(self, statuses: typing.Iterable[gateway_status.GatewayStatus]) -> None:
        """What the gateways' status records say (the worker reads them every few seconds):
        the pool's shard count and each shard's heartbeat latency."""
        now = time.time()
        latencies: dict[int, float] = {}
        counts: set[int] = set()
        for record in statuses:
            if not record.publishes or not record.fresh(now):
                continue
            if record.shard_count is not None:
                counts.add(record.shard_count)
            for shard_id, shard in record.shards.items():
                if shard.connected:
                    latencies[shard_id] = math.nan if shard.latency is None else shard.latency
        self._latencies = latencies
        if len(counts) == 1:  # two layouts publish only mid re-shard: the events say which
            self.shard_count = counts.pop()

    def get_me(self) -> hikari.OwnUser | None:
        """The bot's user, fetched at start (before ``StartingEvent``); None before, or until
        a fetch succeeds (the worker tries again every few seconds)."""
        return self._me

    # --- listeners, as hikari's GatewayBot has them -----------------------------------------

    def listen(
        self, *event_types: type[T]
    ) -> typing.Callable[[event_manager_api.CallbackT[T]], event_manager_api.CallbackT[T]]:
        """Register a listener for hikari event types, or for the type its first parameter is
        annotated with (a union for several), as ``GatewayBot.listen`` does."""
        register = self._event_manager.listen(*event_types)

        def decorator(callback: event_manager_api.CallbackT[T]) -> event_manager_api.CallbackT[T]:
            try:
                return register(callback)
            except NameError as exc:
                # The annotation names a type imported under typing.TYPE_CHECKING only (as
                # ruff's TC002 suggests) or a local class: hikari evaluates it in the module.
                raise TypeError(
                    f"@bot.listen(): cannot read the event type of {callback.__qualname__}"
                    f" ({exc}); define or import it at module level, not under"
                    " typing.TYPE_CHECKING, or pass it: @bot.listen(hikari.SomeEvent)"
                ) from exc

        return decorator

    def subscribe(
        self, event_type: type[typing.Any], callback: event_manager_api.CallbackT[typing.Any]
    ) -> None:
        self._event_manager.subscribe(event_type, callback)

    def unsubscribe(
        self, event_type: type[typing.Any], callback: event_manager_api.CallbackT[typing.Any]
    ) -> None:
        self._event_manager.unsubscribe(event_type, callback)

    def get_listeners(
        self, event_type: type[T], /, *, polymorphic: bool = True
    ) -> typing.Collection[event_manager_api.CallbackT[T]]:
        return self._event_manager.get_listeners(event_type, polymorphic=polymorphic)

    @typing.overload
    def dispatch(
        self, event: hikari.Event, *, return_tasks: typing.Literal[False] = False
    ) -> None: ...

    @typing.overload
    def dispatch(
        self, event: hikari.Event, *, return_tasks: typing.Literal[True] = True
    ) -> asyncio.Future[typing.Any]: ...

    @typing.overload
    def dispatch(
        self, event: hikari.Event, *, return_tasks: bool = False
    ) -> asyncio.Future[typing.Any] | None: ...

    def dispatch(
        self, event: hikari.Event, *, return_tasks: bool = False
    ) -> asyncio.Future[typing.Any] | None:
        """Run ``event``'s listeners on this replica, each in a task (``return_tasks``: a
        future of them all), and resolve its waiters, as ``GatewayBot.dispatch`` does."""
        return self._event_manager.dispatch(event, return_tasks=return_tasks)

    async def wait_for(
        self,
        event_type: type[T],
        /,
        timeout: float | None,
        predicate: event_manager_api.PredicateT[T] | None = None,
    ) -> T:
        """The next ``event_type`` event this replica takes (or dispatches) that
        ``predicate`` accepts; another replica's events never reach it."""
        self._check_alive()
        self._say_if_unbound(event_type)
        return await self._event_manager.wait_for(event_type, timeout=timeout, predicate=predicate)

    def stream(
        self, event_type: type[T], /, timeout: float | None, limit: int | None = None
    ) -> hikari.api.EventStream[T]:
        """A stream of the ``event_type`` events this replica takes (as :meth:`wait_for`)."""
        self._check_alive()
        self._say_if_unbound(event_type)
        return self._event_manager.stream(event_type, timeout=timeout, limit=limit)

    def _say_if_unbound(self, event_type: type[hikari.Event]) -> None:
        """Log (once per type) a wait for gateway events this replica's queue does not bind:
        it could only ever see what bot code dispatches itself."""
        if self._bound is None or event_type in self._unbound_said:
            return
        sources = self._event_manager.gateway_events_for(event_type)
        if sources and not sources & self._bound:
            self._unbound_said.add(event_type)
            _LOGGER.warning(
                "waiting for events this worker group does not receive: listen to the type"
                " in a plugin's setup so that the group's queue binds it",
                extra={"event": event_type.__name__, "gateway_events": sorted(sources)},
            )

    def binds(self, gateway_events: typing.Iterable[str]) -> None:
        """The gateway events this replica's queue binds (the worker app says, once bound)."""
        self._bound = frozenset(gateway_events)

    def _check_alive(self) -> None:
        if not self._alive:
            raise hikari.ComponentStateConflictError(
                "bot is not running so it cannot be interacted with"
            )

    # --- for bot code -----------------------------------------------------------------------

    def command(
        self, name: str | None = None, **kwargs: typing.Any
    ) -> typing.Callable[[command_model.Callback], command_model.Callback]:
        """Register a slash and prefix command; see ``CommandRouter.command``."""
        return self.commands.command(name, **kwargs)

    def group(self, name: str, **kwargs: typing.Any) -> command_model.Command:
        """A command holding subcommands; see ``CommandRouter.group``."""
        return self.commands.group(name, **kwargs)

    def shard_for(self, guild_id: int) -> remote_shard.RemoteShard:
        """The shard that holds ``guild_id``, wherever it runs now."""
        return self.remote_shard(sharding.shard_for_guild(guild_id, self.shard_count))

    def remote_shard(self, shard_id: int, reply_to: str | None = None) -> remote_shard.RemoteShard:
        if self._channel is None:
            raise RuntimeError("remote shards exist once the worker has started")
        return remote_shard.RemoteShard(
            self._channel,
            pool=self._pool,
            namespace=self._namespace,
            shard_id=shard_id,
            shard_count=self.shard_count,
            reply_to=reply_to,
            replies=self._command_replies,
            intents=self.intents,
        )

    async def update_voice_state(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        channel: hikari.SnowflakeishOr[hikari.GuildVoiceChannel] | None,
        *,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> None:
        """Join, move or leave voice in ``guild``, through the gateway holding its shard."""
        await self.shard_for(int(guild)).update_voice_state(
            guild, channel, self_mute=self_mute, self_deaf=self_deaf
        )

    async def request_guild_members(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        *,
        include_presences: bool = False,
        query: str = "",
        limit: int = 0,
        users: typing.Sequence[hikari.SnowflakeishOr[hikari.User]] | None = None,
        nonce: str | None = None,
    ) -> None:
        """Ask the gateway holding ``guild``'s shard for its members (the chunks arrive as
        ``MemberChunkEvent``s, on whichever replica takes them)."""
        await self.shard_for(int(guild)).request_guild_members(
            guild,
            include_presences=include_presences,
            query=query,
            limit=limit,
            users=users,
            nonce=nonce,
        )

    async def update_presence(
        self,
        *,
        idle_since: dt.datetime | None = None,
        afk: bool = False,
        activity: hikari.Activity | None = None,
        status: hikari.Status = hikari.Status.ONLINE,
    ) -> None:
        """Set the presence on every shard of the pool (as ``GatewayBot.update_presence``)."""
        await asyncio.gather(
            *(
                shard.update_presence(
                    idle_since=idle_since, afk=afk, activity=activity, status=status
                )
                for shard in self.shards.values()
            )
        )

    # --- wiring (the worker app) ------------------------------------------------------------

    def attach(  # noqa: PLR0913 - what the worker app hands over, by name
        self,
        *,
        rest: deadline.InteractionAwareRest,
        cache: reader.CacheReader,
        channel: pika_abc.AbstractChannel,
        pool: str,
        namespace: str,
        settings: settings_store.SettingsStore,
        redis: aioredis.Redis,
        redis_keys: keys_module.RedisKeys,
        default_prefix: str = "!",
    ) -> None:
        self.attach_clients(rest=rest, cache=cache, redis=redis, redis_keys=redis_keys)
        self._settings = settings
        self.commands.default_prefix = default_prefix
        self._channel = channel
        self._command_replies = remote_shard.CommandReplies(channel)
        self._pool = pool
        self._namespace = namespace

    # --- context menus, components, modals, errors (``CommandRouter``) ----------------------

    def user_command(
        self, name: str, **kwargs: typing.Any
    ) -> typing.Callable[[command_model.Callback], command_model.Callback]:
        """A user context-menu command: ``callback(ctx, user)``; see ``CommandRouter``."""
        return self.commands.context_menu(hikari.CommandType.USER, name, **kwargs)

    def message_command(
        self, name: str, **kwargs: typing.Any
    ) -> typing.Callable[[command_model.Callback], command_model.Callback]:
        """A message context-menu command: ``callback(ctx, message)``."""
        return self.commands.context_menu(hikari.CommandType.MESSAGE, name, **kwargs)

    def component(
        self, pattern: str, **kwargs: typing.Any
    ) -> typing.Callable[[command_model.Callback], command_model.Callback]:
        """Route clicks whose ``custom_id`` matches ``pattern`` (``"vote:*"``), on any replica."""
        return self.commands.component(pattern, **kwargs)

    def modal(
        self, pattern: str, **kwargs: typing.Any
    ) -> typing.Callable[[command_model.Callback], command_model.Callback]:
        """Route submitted modals whose ``custom_id`` matches ``pattern``."""
        return self.commands.modal(pattern, **kwargs)

    def error_handler(self, callback: command_model.ErrorHandler) -> command_model.ErrorHandler:
        """``callback(ctx, exc)`` for what a handler raised and did not handle itself."""
        return self.commands.error_handler(callback)

    def attach_clients(
        self,
        *,
        rest: deadline.InteractionAwareRest,
        cache: reader.CacheReader,
        redis: aioredis.Redis,
        redis_keys: keys_module.RedisKeys,
    ) -> None:
        """REST, the cache and Redis: what ``sync-commands`` also gives plugins' setup."""
        self._rest = rest
        rest.opens_modal = self.commands.opens_modal
        self._cache = cache
        self._redis = redis
        self._keys = redis_keys
        self.commands.cooldowns = command_cooldowns.Cooldowns(redis, redis_keys)
        self.commands.concurrency = command_cooldowns.Concurrency(redis, redis_keys)
        self.commands.prompts = command_prompts.Prompts(redis, redis_keys)

    def registrations(self) -> tuple[int, ...]:
        """How much bot code has registered, by kind (listeners, commands and context menus,
        component and modal routes, services, schedules, fleet answers, voice listeners): a
        plugin's ``setup`` must add to it."""
        return (
            self._event_manager.listener_count(),
            len(self.commands.commands) + len(self.commands.menus),
            len(list(self.commands.component_routes)) + len(list(self.commands.modal_routes)),
            len(self.services.defined),
            len(self.schedules.defined),
            len(self.fleet.answers),
            sum(len(handlers) for handlers in self.voice.listeners.values()),
        )

    def remember_me(self, me: hikari.OwnUser | None) -> None:
        """The bot's own user, as the worker fetched it (``get_me()``)."""
        if me is not None:
            self._me = me

    async def starting(self, me: hikari.OwnUser | None) -> None:
        """The worker is starting: plugins are set up; ``StartingEvent`` runs to completion."""
        self.remember_me(me)
        self._alive = True
        await self._event_manager.dispatch(
            self._event_factory.deserialize_starting_event(), return_tasks=True
        )

    async def started(self) -> None:
        """The worker consumes: ``StartedEvent`` runs to completion."""
        await self._event_manager.dispatch(
            self._event_factory.deserialize_started_event(), return_tasks=True
        )

    async def stopping(self, timeout: float) -> None:
        """The worker stops: ``StoppingEvent``, its listeners given up to ``timeout``."""
        if self._alive:
            await self._lifecycle(self._event_factory.deserialize_stopping_event(), timeout)

    async def stopped(self, timeout: float) -> None:
        """The worker has drained: ``StoppedEvent``, its listeners given up to ``timeout``
        (REST, the cache and the settings still work in them)."""
        if not self._alive:
            return
        await self._lifecycle(self._event_factory.deserialize_stopped_event(), timeout)
        self._alive = False

    async def _lifecycle(self, event: hikari.Event, timeout: float) -> None:
        tasks = self._event_manager.dispatch(event, return_tasks=True)
        try:
            await asyncio.wait_for(tasks, timeout)
        except TimeoutError:
            _LOGGER.warning(
                "lifecycle listeners still running; stopping anyway",
                extra={"event": type(event).__name__, "waited": timeout},
            )
