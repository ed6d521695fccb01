"""What parts of the worker need of the bot, as small structural types (hikari's ``traits``).

Commands and voice are handed the :class:`~worker.bot.Bot`, but they name only the
capabilities they use, so they never import the module that assembles them (the ``Bot``
imports them). ``Bot`` satisfies every protocol here without naming any of them; mypy checks
that where ``Bot`` hands itself over.
"""

from __future__ import annotations

import typing

import hikari

if typing.TYPE_CHECKING:
    from shared.cache import reader
    from shared.settings import store
    from worker import remote_shard
    from worker.commands import prompts

__all__: typing.Sequence[str] = (
    "CacheAware",
    "CommandApp",
    "CommandsAware",
    "Listener",
    "ListenerAware",
    "PromptsAware",
    "RESTAware",
    "RouterApp",
    "SettingsAware",
    "ShardAware",
    "VoiceApp",
)

EventT = typing.TypeVar("EventT", bound=hikari.Event)
Listener = typing.Callable[[EventT], typing.Coroutine[typing.Any, typing.Any, None]]


class RESTAware(typing.Protocol):
    """Has a REST client."""

    __slots__ = ()

    @property
    def rest(self) -> hikari.api.RESTClient:
        """Hikari's REST client; raises ``RuntimeError`` before the worker has started."""
        raise NotImplementedError


class CacheAware(typing.Protocol):
    """Reads the gateway's cache."""

    __slots__ = ()

    @property
    def cache(self) -> reader.CacheReader:
        """The shared cache in Redis; raises ``RuntimeError`` before the worker has started."""
        raise NotImplementedError


class SettingsAware(typing.Protocol):
    """Reads and writes guild and user settings."""

    __slots__ = ()

    @property
    def settings(self) -> store.SettingsStore:
        """The settings store; raises ``RuntimeError`` before the worker has started."""
        raise NotImplementedError


class PromptsAware(typing.Protocol):
    """Holds the waits for a user's next message or click."""

    __slots__ = ()

    @property
    def prompts(self) -> prompts.Prompts | None:
        """The prompts, when the worker has Redis."""
        raise NotImplementedError


class CommandsAware(typing.Protocol):
    """Runs commands; a command's context asks it for the prompts."""

    __slots__ = ()

    @property
    def commands(self) -> PromptsAware:
        """The command router."""
        raise NotImplementedError


class ListenerAware(typing.Protocol):
    """Takes listeners for hikari event types."""

    __slots__ = ()

    def listen(
        self, *event_types: type[EventT]
    ) -> typing.Callable[[Listener[EventT]], Listener[EventT]]:
        """Register the decorated callback for each of ``event_types``."""
        raise NotImplementedError


class ShardAware(typing.Protocol):
    """Reaches the shard holding a guild, wherever it runs."""

    __slots__ = ()

    def shard_for(self, guild_id: int) -> remote_shard.RemoteShard:
        """The shard that holds ``guild_id`` now."""
        raise NotImplementedError


class CommandApp(RESTAware, CacheAware, SettingsAware, CommandsAware, typing.Protocol):
    """What a command's context offers as ``ctx.bot``: the means to answer and to look up."""

    __slots__ = ()


class RouterApp(CommandApp, ListenerAware, typing.Protocol):
    """What the command router needs: a command's app, and to listen for messages and
    interactions."""

    __slots__ = ()


class VoiceApp(RESTAware, ShardAware, typing.Protocol):
    """What voice needs: shards to join and leave channels through, and (as hikari's events
    do) a REST client for the handlers of Lavalink's events."""

    __slots__ = ()
