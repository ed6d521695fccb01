"""What bot code sees: an app that reads like hikari's.

::

    bot = Bot()

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if event.content == "!ping":
            await event.message.respond("pong")      # event.app.rest is hikari's REST client

Events are hikari's own types, built by hikari's factories; ``event.shard`` and
``bot.shard_for(guild_id)`` are remote shards whose commands go to the gateway holding them.
"""

from __future__ import annotations

import typing

import hikari
from hikari.impl import entity_factory, event_factory

from shared import config, sharding
from worker import commands, cpu, event_view, events, remote_shard, services, voice
from worker import interactions as deadline
from worker.commands import cooldowns as command_cooldowns
from worker.commands import prompts as command_prompts

if typing.TYPE_CHECKING:
    import concurrent.futures

    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc

    from shared import keys
    from shared import settings as settings_store
    from shared.cache import reader
    from worker.commands import model as command_model
    from worker.traits import Listener

T = typing.TypeVar("T", bound=hikari.Event)


class Bot:
    """The worker-side app: listeners, REST, cache and remote shards."""

    def __init__(self) -> None:
        #: What hikari's events and models hold as ``app``: this bot, with the synchronous
        #: cache of the event being handled (``event.get_guild()`` ...; see worker/event_view).
        self.app = event_view.EventApp(self)
        self._entity_factory = entity_factory.EntityFactoryImpl(self.app)
        self._event_factory = event_factory.EventFactoryImpl(self.app)
        self.events = events.EventBuilder(self._entity_factory, self._event_factory)
        self._rest: deadline.InteractionAwareRest | None = None
        self.cache: reader.CacheReader | None = None
        #: Guild and user settings and infractions (MongoDB, cached across replicas).
        self.settings: settings_store.SettingsStore | None = None
        #: Slash and prefix commands (``@bot.command(...)``).
        self.commands = commands.CommandRouter(self)
        #: The pool's Redis and key schema, for plugins that keep shared state.
        self.redis: aioredis.Redis | None = None
        self.keys: keys.RedisKeys | None = None
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
        self.shard_count = 1
        #: The intents the gateways identify with (``INTENTS``; the worker app sets it).
        self.intents = hikari.Intents(config.DEFAULT_INTENTS)

    # --- what hikari models ask of their app ------------------------------------------------

    @property
    def rest(self) -> hikari.api.RESTClient:
        if self._rest is None:
            raise RuntimeError("the bot's REST client exists once the worker has started")
        return typing.cast("hikari.api.RESTClient", self._rest)

    @property
    def interactions(self) -> deadline.InteractionAwareRest:
        if self._rest is None:
            raise RuntimeError("the bot's REST client exists once the worker has started")
        return self._rest

    @property
    def entity_factory(self) -> entity_factory.EntityFactoryImpl:
        return self._entity_factory

    @property
    def executor(self) -> concurrent.futures.Executor | None:
        return None

    @property
    def http_settings(self) -> hikari.impl.HTTPSettings:
        return hikari.impl.HTTPSettings()

    @property
    def proxy_settings(self) -> hikari.impl.ProxySettings:
        return hikari.impl.ProxySettings()

    # --- for bot code -----------------------------------------------------------------------

    def listen(self, *event_types: type[T]) -> typing.Callable[[Listener[T]], Listener[T]]:
        """Register a listener for hikari event types (as ``GatewayBot.listen`` does)."""

        def decorator(callback: Listener[T]) -> Listener[T]:
            for event_type in event_types:
                self.events.subscribe(event_type, callback)
            return callback

        return decorator

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

    # --- wiring (the worker app) ------------------------------------------------------------

    def attach(  # noqa: PLR0913 - what the worker app hands over, by name
        self,
        *,
        rest: deadline.InteractionAwareRest,
        cache: reader.CacheReader,
        channel: pika_abc.AbstractChannel,
        pool: str,
        namespace: str,
        settings: settings_store.SettingsStore | None = None,
        redis: aioredis.Redis | None = None,
        redis_keys: keys.RedisKeys | None = None,
        default_prefix: str = "!",
    ) -> None:
        self._rest = rest
        rest.opens_modal = self.commands.opens_modal
        self.settings = settings
        self.redis = redis
        self.keys = redis_keys
        self.commands.default_prefix = default_prefix
        if redis is not None and redis_keys is not None:
            self.commands.cooldowns = command_cooldowns.Cooldowns(redis, redis_keys)
            self.commands.concurrency = command_cooldowns.Concurrency(redis, redis_keys)
            self.commands.prompts = command_prompts.Prompts(redis, redis_keys)
        self.cache = cache
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
