"""Typed hikari events from envelopes, built by hikari's own event manager and factories.

hikari's ``EventManagerImpl`` knows, for every gateway event name, how to build the typed
event (``on_message_create`` → ``GuildMessageCreateEvent`` ...). Here it builds them and hands
them back instead of firing listeners in tasks of their own, so that the worker can await
every listener before it acks the message; what bot code dispatches itself runs as hikari runs
it. Which gateway events have listeners (what the worker group's queue binds) is read from
hikari's consumer table; that table, the waiters and the dispatched tasks are the private
structures this module touches (checked by ``check_compatibility``).
"""

from __future__ import annotations

import asyncio
import functools
import typing

import hikari
from hikari.events import base_events, shard_events
from hikari.impl import event_manager, event_manager_base

if typing.TYPE_CHECKING:
    from hikari.api import entity_factory as entity_factory_api
    from hikari.api import event_factory as event_factory_api
    from hikari.api import event_manager as event_manager_api

__all__: typing.Sequence[str] = (
    "UndeserializableError",
    "WorkerEventManager",
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
    for name in ("_waiters", "_dispatched_tasks"):
        if not any(name in getattr(base, "__slots__", ()) for base in builder_type.__mro__):
            raise RuntimeError(f"hikari's event manager no longer has {name}; see worker/events.py")
    for name in ("_enabled_for_event", "_increment_waiter_group_count"):
        if not hasattr(builder_type, name):
            raise RuntimeError(f"hikari's event manager lost {name}; see worker/events.py")
    consumer_type = getattr(event_manager_base, "_Consumer", None)
    fields = {"callback", "is_enabled", "listener_group_count", "waiter_group_count"}
    found = {*dir(consumer_type), *(a.name for a in getattr(consumer_type, "__attrs_attrs__", ()))}
    if consumer_type is None or not fields <= found:
        raise RuntimeError(f"hikari's _Consumer lost one of {sorted(fields)}; see worker/events.py")


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


class WorkerEventManager(event_manager.EventManagerImpl):
    """hikari's ``EventManager`` (``bot.event_manager``), split in two paths.

    Gateway events from the broker are *built* (:meth:`build`): the typed events are handed
    to the consumer, which awaits every listener before it acks the message and reruns only
    the failed ones on a retry; waiters (``wait_for``, which ``stream`` also is, through its
    listener) are resolved as they are built. Anything else dispatched (``bot.dispatch``, a
    framework's own events, the lifecycle events) runs as hikari runs it: each listener in a
    task of its own, waiters resolved, ``return_tasks=True`` to await them.

    Only events that reach *this* replica are seen: a gateway event is delivered to one
    replica of the group, so ``wait_for``/``stream`` here never see what another replica
    took (``ctx.prompt`` waits across replicas through Redis).
    """

    __slots__ = ("_collected",)

    def __init__(
        self,
        entity_factory: entity_factory_api.EntityFactory,
        event_factory: event_factory_api.EventFactory,
    ) -> None:
        # Intents.ALL: which intents the gateways use is the operator's INTENTS, set after
        # plugins are written; hikari's MissingIntentWarning would misjudge a plugin here.
        super().__init__(entity_factory, event_factory, hikari.Intents.ALL, cache=None)
        self._collected: list[hikari.Event] | None = None

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
        """While a gateway event is being built, collect what hikari's consumers dispatch (the
        worker awaits those listeners itself); otherwise run listeners as hikari does."""
        if self._collected is not None:
            self._collected.append(event)
            return None
        return super().dispatch(event, return_tasks=return_tasks)

    def subscribe(
        self,
        event_type: type[typing.Any],
        callback: event_manager_api.CallbackT[typing.Any],
        *,
        _nested: int = 0,
    ) -> None:
        """hikari's ``subscribe``; a parameterised type (``ExceptionEvent[Event]``, as an
        annotation says it) is subscribed as its class: hikari 2.7 keys it by the alias, which
        no event ever matches."""
        super().subscribe(_unparameterised(event_type), callback, _nested=_nested + 1)

    def unsubscribe(
        self, event_type: type[typing.Any], callback: event_manager_api.CallbackT[typing.Any]
    ) -> None:
        super().unsubscribe(_unparameterised(event_type), callback)

    def build(
        self, name: str, shard: hikari.api.GatewayShard, payload: typing.Any
    ) -> list[hikari.Event]:
        """The typed events hikari makes of one dispatch (none when nothing listens or waits);
        the waiters for them are resolved here."""
        if name.lower() not in self._consumers:
            return []
        collected = self._collected = []
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
        finally:
            self._collected = None
        for event in collected:
            self._resolve_waiters(event)
        return collected

    def _resolve_waiters(self, event: hikari.Event) -> None:
        """What hikari's ``dispatch`` does for waiters, without running listeners."""
        for cls in event.dispatches():
            waiters = self._waiters.get(cls)
            if waiters is None:
                continue
            for waiter in tuple(waiters):
                predicate, future = waiter
                if not future.done():
                    try:
                        if predicate is not None and not predicate(event):
                            continue
                    except (
                        Exception
                    ) as exc:  # the caller's predicate: its error goes to its wait_for
                        future.set_exception(exc)
                    else:
                        future.set_result(event)
                waiters.remove(waiter)
            if not waiters:
                del self._waiters[cls]
                self._increment_waiter_group_count(cls, -1)

    def listeners_for(self, event: hikari.Event) -> list[Listener]:
        """The listeners the consumer awaits for a built event. While something listens to
        ``ExceptionEvent``, each one that fails also dispatches one (as hikari does), then
        fails as before: the message is retried for it."""
        listeners = [
            typing.cast("Listener", callback)
            for callback in self.get_listeners(type(event), polymorphic=True)
        ]
        if not listeners or not self.get_listeners(hikari.ExceptionEvent, polymorphic=True):
            return listeners
        if isinstance(event, hikari.ExceptionEvent):
            return listeners  # hikari never reports a failure to report a failure
        return [self._reporting(listener) for listener in listeners]

    def _reporting(self, listener: Listener) -> Listener:
        # wraps keeps __module__ and __qualname__: the listener's id (listener_ids) is its own.
        @functools.wraps(listener)
        async def reporting(event: hikari.Event) -> None:
            try:
                await listener(event)
            except Exception as exc:
                self.dispatch(
                    hikari.ExceptionEvent(
                        exception=exc, failed_event=event, failed_callback=listener
                    )
                )
                raise

        return reporting

    def listener_count(self) -> int:
        """How many (event type, listener) subscriptions there are."""
        return sum(len(self.get_listeners(t, polymorphic=False)) for t in list(self._listeners))

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the listeners of dispatched events still running,
        those they dispatch meanwhile included."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._dispatched_tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._dispatched_tasks), timeout=left)

    def missing_intents(self, intents: hikari.Intents) -> dict[str, list[str]]:
        """Listened (or awaited) event types that ``intents`` never delivers, with the intent
        combinations that would (what hikari's ``MissingIntentWarning`` says at subscribe)."""
        missing = {}
        for event_type in {*self._listeners, *self._waiters}:
            groups = base_events.get_required_intents_for(event_type)
            if groups and not any(intents & group == group for group in groups):
                missing[event_type.__name__] = [str(group) for group in groups]
        return dict(sorted(missing.items()))

    def gateway_events_for(self, event_type: type[hikari.Event]) -> set[str]:
        """The gateway events that may build ``event_type`` (none for the bot's own)."""
        wanted = event_type.bitmask()
        names = set()
        for name, consumer in self._consumers.items():
            unfiltered = _UNFILTERED.get(name)
            if unfiltered is not None:
                if any(issubclass(t, event_type) for t in unfiltered):
                    names.add(name.upper())
            elif consumer.events_bitmask & wanted == wanted:
                names.add(name.upper())
        return names

    def listened_gateway_events(self) -> list[str]:
        """Gateway event names that build at least one listened (or awaited) event type."""
        names = []
        for name, consumer in self._consumers.items():
            unfiltered = _UNFILTERED.get(name)
            if unfiltered is not None:
                # hikari decides inside these consumers which event they build.
                if any(self._enabled_for_event(t) for t in unfiltered):
                    names.append(name.upper())
            elif consumer.listener_group_count > 0 or consumer.waiter_group_count > 0:
                names.append(name.upper())
        return sorted(names)


def _unparameterised(event_type: type[typing.Any]) -> type[typing.Any]:
    origin = typing.get_origin(event_type)
    return origin if isinstance(origin, type) else event_type


def _describe(exc: Exception) -> str:
    """What went wrong, never the payload's values: a missing key's name, a message cut short."""
    if isinstance(exc, KeyError):
        return f"(missing {exc.args[0]!r})" if exc.args else ""
    return str(exc)[:200]
