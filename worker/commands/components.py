"""Stateless component and modal routes: a handler per ``custom_id`` pattern, run on whichever
replica receives the click or the submitted modal.

    @bot.component("vote:*")
    async def vote(ctx: ComponentContext) -> None:
        poll, choice = ctx.captures[0].split(":")     # custom_id "vote:42:yes"
        await ctx.respond(f"voted {choice}", ephemeral=True)

Everything a handler needs travels in the ``custom_id`` (up to 100 characters) and the
interaction, so no replica keeps a registry of the messages it sent: a click on a message
sent a week ago by a replica long gone is routed by its id alone. A click some handler waits
for (``ctx.wait_for_component``) is offered to that wait first.

A pattern is the ``custom_id`` with ``*`` standing for any run of characters (``:`` included);
the most specific route wins (an exact id, then the longest text before the first ``*``),
then the first registered. Without ``opens_modal=True`` a click is deferred 2 s after it
arrived if its handler has not answered (``worker.interactions``); a route that opens a
modal is never deferred, as a modal can only be the first response.
"""

from __future__ import annotations

import dataclasses
import re
import typing

import hikari

from worker.commands import modals

if typing.TYPE_CHECKING:
    from worker import traits
    from worker.commands import model

__all__: typing.Sequence[str] = ("ComponentContext", "ComponentRoutes", "Route")

#: Component Reference > Custom ID: "a developer-defined identifier ... max 100 characters".
CUSTOM_ID_LIMIT: typing.Final = 100
ComponentCallback = typing.Callable[..., typing.Coroutine[typing.Any, typing.Any, None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    pattern: str
    callback: ComponentCallback
    opens_modal: bool = False
    on_error: model.ErrorHandler | None = None
    plugin: str = ""
    #: For a modal route: the typed fields its callback reads, by text input ``custom_id``.
    fields: tuple[typing.Any, ...] = ()

    @property
    def specificity(self) -> int:
        star = self.pattern.find("*")
        return CUSTOM_ID_LIMIT + 1 if star < 0 else star  # an exact id before any pattern

    def match(self, custom_id: str) -> tuple[str, ...] | None:
        """What each ``*`` matched, or ``None`` when the id is not this route's."""
        found = _compiled(self.pattern).fullmatch(custom_id)
        return None if found is None else found.groups()


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        pieces = [re.escape(piece) for piece in pattern.split("*")]
        compiled = _PATTERNS[pattern] = re.compile("(.*?)".join(pieces), re.DOTALL)
    return compiled


class ComponentRoutes:
    """The routes of one kind (component clicks, or modal submissions), most specific first."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._routes: list[Route] = []

    def __iter__(self) -> typing.Iterator[Route]:
        return iter(self._routes)

    def add(self, route: Route) -> None:
        if not route.pattern or len(route.pattern) > CUSTOM_ID_LIMIT:
            raise ValueError(f"{self._what} pattern {route.pattern!r}: 1-100 characters")
        if any(r.pattern == route.pattern for r in self._routes):
            raise ValueError(f"{self._what} pattern {route.pattern!r} is already routed")
        self._routes.append(route)
        # Stable: among equally specific routes, the first registered stays first.
        self._routes.sort(key=lambda r: -r.specificity)

    def find(self, custom_id: str) -> tuple[Route, tuple[str, ...]] | None:
        for route in self._routes:
            captures = route.match(custom_id)
            if captures is not None:
                return route, captures
        return None


@dataclasses.dataclass(slots=True)
class ComponentContext:
    """A click, a select or a submitted modal, with the ways Discord lets it be answered."""

    bot: traits.CommandApp
    interaction: hikari.ComponentInteraction | hikari.ModalInteraction
    route: Route
    #: What each ``*`` of the route's pattern matched, in order.
    captures: tuple[str, ...]
    responded: bool = False
    deferred: bool = False

    @property
    def custom_id(self) -> str:
        return self.interaction.custom_id

    @property
    def parts(self) -> list[str]:
        """The ``custom_id`` split on ``:`` (``"vote:42:yes"`` -> ``["vote", "42", "yes"]``)."""
        return self.custom_id.split(":")

    @property
    def author(self) -> hikari.User:
        return self.interaction.user

    @property
    def member(self) -> hikari.InteractionMember | None:
        return self.interaction.member

    @property
    def guild_id(self) -> hikari.Snowflake | None:
        return self.interaction.guild_id

    @property
    def channel_id(self) -> hikari.Snowflake:
        return self.interaction.channel_id

    @property
    def message(self) -> hikari.Message | None:
        """The message the component is on (for a modal: the one whose component opened it)."""
        return self.interaction.message

    @property
    def values(self) -> typing.Sequence[str]:
        """A select menu's chosen values (empty for a button or a modal)."""
        if isinstance(self.interaction, hikari.ComponentInteraction):
            return self.interaction.values
        return ()

    async def respond(
        self,
        content: hikari.UndefinedOr[typing.Any] = hikari.UNDEFINED,
        *,
        ephemeral: bool = False,
        **kwargs: typing.Any,
    ) -> None:
        """A new message (the clicked one stays as it was); later calls follow up."""
        flags = hikari.MessageFlag.EPHEMERAL if ephemeral else hikari.MessageFlag.NONE
        if self.responded:
            await self.interaction.execute(content, flags=flags, **kwargs)
            return
        self.responded = True
        await self.interaction.create_initial_response(
            hikari.ResponseType.MESSAGE_CREATE, content, flags=flags, **kwargs
        )

    async def update(
        self, content: hikari.UndefinedOr[typing.Any] = hikari.UNDEFINED, **kwargs: typing.Any
    ) -> None:
        """Edit the message the component is on (Interaction Response Type 7
        UPDATE_MESSAGE, or an edit of the original after a deferral)."""
        if self.responded:
            await self.interaction.edit_initial_response(content, **kwargs)
            return
        self.responded = True
        await self.interaction.create_initial_response(
            hikari.ResponseType.MESSAGE_UPDATE, content, **kwargs
        )

    async def defer(self) -> None:
        """Acknowledge now, edit the message later with :meth:`update` (type 6)."""
        if self.responded:
            return
        self.responded = self.deferred = True
        await self.interaction.create_initial_response(hikari.ResponseType.DEFERRED_MESSAGE_UPDATE)

    async def respond_with_modal(
        self, title: str, custom_id: str, *fields: modals.TextInput
    ) -> None:
        """Open a modal (only as the first response, and not from a modal: a route that does
        this is declared ``opens_modal=True``)."""
        if not isinstance(self.interaction, hikari.ComponentInteraction):
            raise TypeError("a submitted modal cannot be answered with another modal")
        self.responded = True
        await modals.open_modal(self.interaction, title, custom_id, fields)
