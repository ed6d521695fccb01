"""hikari's command frameworks on a worker: hikari-arc and hikari-tanjun, attached with their own
documented gateway set-up (``arc.GatewayClient(bot)``, ``tanjun.Client.from_gateway_bot(bot)``).

Both subscribe to ``bot.event_manager`` like any listener, so they find the worker's bot as
they would a ``GatewayBot``. What a replica must do differently from a single process (no
command declaring at each start, commands registered once by ``sync-commands``, answers
within the worker's 3 s guard) is done by :func:`prepare`, which the worker calls once the
plugins are set up, and :func:`command_builders`, which ``sync-commands`` calls. A framework
no plugin imported is never imported here.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import typing

import hikari

if typing.TYPE_CHECKING:
    import types

    from shared.cache import reader

__all__: typing.Sequence[str] = ("Attached", "attached", "command_builders", "prepare")

#: The events a framework's client subscribes to when it is made, by which it is found.
_FOUND_BY: typing.Final = (
    hikari.StartingEvent,
    hikari.StartedEvent,
    hikari.StoppingEvent,
    hikari.InteractionCreateEvent,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Attached:
    """The framework clients attached to a bot."""

    arc: list[typing.Any]
    tanjun: list[typing.Any]

    def __len__(self) -> int:
        return len(self.arc) + len(self.tanjun)


def _glue(framework: str) -> types.ModuleType | None:
    """This package's module for ``framework``, when a plugin imported the framework."""
    if framework not in sys.modules:
        return None
    module = importlib.import_module(f"worker.frameworks.{framework}")
    module.check_compatibility()
    return module


def attached(events: hikari.api.EventManager) -> Attached:
    """The arc and tanjun clients subscribed to ``events``."""
    listeners: list[object] = []
    for event_type in _FOUND_BY:
        listeners.extend(events.get_listeners(event_type))
    arc_glue, tanjun_glue = _glue("arc"), _glue("tanjun")
    return Attached(
        arc=arc_glue.clients(listeners) if arc_glue is not None else [],
        tanjun=tanjun_glue.clients(listeners) if tanjun_glue is not None else [],
    )


def prepare(
    events: hikari.api.EventManager,
    *,
    own_commands: bool = False,
    cache: reader.CacheReader | None = None,
    me: typing.Callable[[], hikari.OwnUser | None] | None = None,
) -> Attached:
    """Make the attached frameworks fit for replicas (see the modules of this package);
    ``own_commands`` says the bot's own router has slash commands too; ``cache`` and ``me``
    (the bot's own user) are offered to tanjun through its asynchronous cache interfaces."""
    found = attached(events)
    alone = len(found) == 1 and not own_commands
    if found.arc:
        arc_glue = importlib.import_module("worker.frameworks.arc")
        for client in found.arc:
            arc_glue.prepare(client, events)
    if found.tanjun:
        tanjun_glue = importlib.import_module("worker.frameworks.tanjun")
        for client in found.tanjun:
            tanjun_glue.prepare(client, alone=alone, cache=cache, me=me)
    return found


def command_builders(
    events: hikari.api.EventManager, guild_id: int | None = None
) -> list[hikari.api.CommandBuilder]:
    """Every attached framework's application commands, for ``sync-commands``."""
    found = attached(events)
    builders: list[hikari.api.CommandBuilder] = []
    if found.arc:
        arc_glue = importlib.import_module("worker.frameworks.arc")
        for client in found.arc:
            builders.extend(arc_glue.command_builders(client, guild_id))
    if found.tanjun:
        tanjun_glue = importlib.import_module("worker.frameworks.tanjun")
        for client in found.tanjun:
            builders.extend(tanjun_glue.command_builders(client, guild_id))
    return builders
