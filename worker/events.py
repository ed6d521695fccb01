"""Typed hikari events from envelopes, built by hikari's own event manager and factories.

hikari's ``EventManagerImpl`` knows, for every gateway event name, how to build the typed
event (``on_message_create`` → ``GuildMessageCreateEvent`` ...). Here it builds them and hands
them back instead of firing listeners in tasks of their own, so that the worker can await
every listener before it acks the message. Which gateway events have listeners (what the
worker group's queue binds) is read from hikari's consumer table, the one private structure
this module touches (checked by ``check_compatibility``).
"""

from __future__ import annotations

import typing

import hikari
from hikari.events import shard_events
from hikari.impl import event_manager, event_manager_base

if typing.TYPE_CHECKING:
    import asyncio

    from hikari.api import entity_factory as entity_factory_api
    from hikari.api import event_factory as event_factory_api

__all__: typing.Sequence[str] = (
    "EventBuilder",
    "UndeserializableError",
    "check_compatibility",
    "listener_ids",
)


class UndeserializableError(ValueError):
    """hikari cannot build a typed event from a dispatch's payload: retrying cannot help, the
    message goes to the dead-letter queue with ``reason`` (which never quotes the payload)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: Consumers hikari does not filter by event type (their bitmask is -1), with the types they
#: build; checked against hikari by ``check_compatibility``.
_UNFILTERED: typing.Final[dict[str, tuple[type[hikari.Event], ...]]] = {
    "guild_create": (hikari.GuildAvailableEvent, hikari.GuildJoinEvent),
    "guild_update": (hikari.GuildUpdateEvent,),
}
Listener = typing.Callable[[typing.Any], typing.Coroutine[typing.Any, typing.Any, None]]


def check_compatibility() -> None:
    """Fail loudly when a hikari upgrade moves what this module relies on."""
    builder_type = event_manager.EventManagerImpl
    if not any("_consumers" in getattr(base, "__slots__", ()) for base in builder_type.__mro__):
        raise RuntimeError("hikari's event manager no longer has _consumers; see worker/events.py")
    if not hasattr(builder_type, "_enabled_for_event"):
        raise RuntimeError("hikari's event manager lost _enabled_for_event; see worker/events.py")
    consumer_type = getattr(event_manager_base, "_Consumer", None)
    if consumer_type is None or not {"callback", "is_enabled"} <= set(dir(consumer_type)):
        raise RuntimeError("hikari's _Consumer lost callback/is_enabled; see worker/events.py")


def listener_ids(listeners: typing.Sequence[Listener]) -> list[str]:
    """A name per listener that another replica computes the same way (``module.qualname``,
    ``#n`` for a repeat), to record which listeners of an event already succeeded."""
    seen: dict[str, int] = {}
    ids = []
    for listener in listeners:
        name = f"{getattr(listener, '__module__', '?')}.{getattr(listener, '__qualname__', '?')}"
        count = seen.get(name, 0)
        seen[name] = count + 1
        ids.append(name if count == 0 else f"{name}#{count}")
    return ids


class EventBuilder(event_manager.EventManagerImpl):
    __slots__ = ("_collected",)

    def __init__(
        self,
        entity_factory: entity_factory_api.EntityFactory,
        event_factory: event_factory_api.EventFactory,
    ) -> None:
        super().__init__(entity_factory, event_factory, hikari.Intents.ALL, cache=None)
        self._collected: list[hikari.Event] | None = None

    def dispatch(  # type: ignore[override]
        self, event: hikari.Event, *, return_tasks: bool = False
    ) -> asyncio.Future[typing.Any] | None:
        """Collect instead of firing: the worker awaits the listeners itself."""
        del return_tasks
        if self._collected is not None:
            self._collected.append(event)
        return None

    def build(
        self, name: str, shard: hikari.api.GatewayShard, payload: typing.Any
    ) -> list[hikari.Event]:
        """The typed events hikari makes of one dispatch (none when nothing listens)."""
        if name.lower() not in self._consumers:
            return []
        self._collected = []
        try:
            # hikari's own consume_raw_event hands a failure to the loop's exception handler,
            # payload (and an interaction's token) included, and carries on: the message would
            # be acked as handled. Here the failure is raised, to be dead-lettered.
            if self._enabled_for_event(shard_events.ShardPayloadEvent):
                self.dispatch(
                    self._event_factory.deserialize_shard_payload_event(shard, payload, name=name)
                )
            consumer = self._consumers[name.lower()]
            if consumer.is_enabled:
                try:
                    consumer.callback(shard, payload)
                except hikari.UnrecognisedEntityError:
                    pass  # an entity type newer than hikari: discarded, as hikari does
                except Exception as exc:
                    raise UndeserializableError(
                        f"hikari cannot build {name} from its payload: {type(exc).__name__}"
                        f" {_describe(exc)}"
                    ) from None
            return self._collected
        finally:
            self._collected = None

    def listeners_for(self, event: hikari.Event) -> list[Listener]:
        return [
            typing.cast("Listener", callback)
            for callback in self.get_listeners(type(event), polymorphic=True)
        ]

    def listened_gateway_events(self) -> list[str]:
        """Gateway event names that build at least one listened event type."""
        names = []
        for name, consumer in self._consumers.items():
            unfiltered = _UNFILTERED.get(name)
            if unfiltered is not None:
                # hikari decides inside these consumers which event they build.
                if any(self._enabled_for_event(t) for t in unfiltered):
                    names.append(name.upper())
            elif consumer.listener_group_count > 0:
                names.append(name.upper())
        return sorted(names)


def _describe(exc: Exception) -> str:
    """What went wrong, never the payload's values: a missing key's name, a message cut short."""
    if isinstance(exc, KeyError):
        return f"(missing {exc.args[0]!r})" if exc.args else ""
    return str(exc)[:200]
