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
from hikari.impl import event_manager

if typing.TYPE_CHECKING:
    import asyncio

    from hikari.api import entity_factory as entity_factory_api
    from hikari.api import event_factory as event_factory_api

__all__: typing.Sequence[str] = ("EventBuilder", "check_compatibility")

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
            self.consume_raw_event(name, shard, payload)
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
