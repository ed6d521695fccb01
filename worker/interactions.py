"""Discord's 3-second deadline, never missed.

When a handler has not answered an interaction 2 s after Discord created it (its snowflake's
time) or the gateway received it, whichever is earlier, the worker defers it: a command with a
public "thinking..." response, a component click with a deferred update of the message it is
on. The handler's own response, whenever it comes, then goes
where Discord expects it after that deferral, through the same REST call it made:

* a command's answer edits the "thinking..." message; an ephemeral one cannot (Discord fixes
  a deferred message's visibility when deferring), so the thinking message is settled, the
  answer sent as an ephemeral follow-up and the placeholder deleted: it is never shown to
  the channel;
* a click answered with an update edits the clicked message; one answered with a new message
  gets a follow-up (ephemeral if asked), and the clicked message stays as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import typing

import hikari

_LOGGER = logging.getLogger("shardline.worker.interactions")
#: Seconds after Discord created an interaction (or the gateway received it, if earlier) at
#: which the worker defers it: a whole second left for the deferral's REST call on a busy
#: machine (0.5 s was missed under load).
DEFER_AFTER: typing.Final[float] = 2.0


def defer_delay(payload: dict[str, typing.Any], received_at: float, now: float) -> float:
    """Seconds from ``now`` until the worker defers the interaction ``payload``.

    Discord's 3 s run from its creation of the interaction, which its id tells (Reference,
    "Snowflakes": milliseconds since the Discord epoch), not from the gateway's receipt: an
    interaction that reached the gateway late (a RESUME's replay during a take-over, a gateway
    whose loop was busy) is deferred as soon as it arrives instead of 2 s later, past the
    deadline. The earlier of the two counts, so a clock behind Discord's never defers later
    than the gateway's receipt says (the soak's late interactions while a killed gateway's
    shards were taken over: ``--seed 5`` with ``gateway-kill``).
    """
    created = hikari.Snowflake(int(payload["id"])).created_at.timestamp()
    return max(min(received_at, created) + DEFER_AFTER - now, 0.0)


_COMPONENT: typing.Final = 3
_MODAL_SUBMIT: typing.Final = 5


class ModalAfterDeferralError(RuntimeError):
    """A handler opened a modal after the worker deferred its interaction: Discord refuses it."""


@dataclasses.dataclass(slots=True)
class _State:
    application_id: int
    token: str
    component: bool
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    responded: bool = False
    deferred: bool = False


class InteractionAwareRest:
    """hikari's REST client, with interaction responses that know about auto-deferral."""

    def __init__(self, rest: hikari.api.RESTClient) -> None:
        self._rest = rest
        self._states: dict[int, _State] = {}
        #: Whether an INTERACTION_CREATE's handler may open a modal, so must not be deferred
        #: (the bot sets it to its command router's answer).
        self.opens_modal: typing.Callable[[dict[str, typing.Any]], bool] = lambda _payload: False
        self.auto_deferred = 0
        #: Ephemeral answers to auto-deferred commands, sent as follow-ups.
        self.privately_answered = 0

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._rest, name)

    @property
    def inner(self) -> hikari.api.RESTClient:
        return self._rest

    async def create_interaction_response(
        self,
        interaction: hikari.SnowflakeishOr[hikari.PartialInteraction],
        token: str,
        response_type: hikari.ResponseType | int,
        content: hikari.UndefinedOr[typing.Any] = hikari.UNDEFINED,
        **kwargs: typing.Any,
    ) -> None:
        state = self._states.get(int(interaction))
        if state is None:
            await self._rest.create_interaction_response(
                interaction, token, response_type, content, **kwargs
            )
            return
        async with state.lock:
            if not state.deferred:
                state.responded = True
                await self._rest.create_interaction_response(
                    interaction, token, response_type, content, **kwargs
                )
                return
        # Deferred by the worker: the handler's answer becomes the deferred response's edit.
        if int(response_type) in (
            hikari.ResponseType.DEFERRED_MESSAGE_CREATE,
            hikari.ResponseType.DEFERRED_MESSAGE_UPDATE,
        ):
            return
        application, token = state.application_id, state.token
        follow_up = {k: v for k, v in kwargs.items() if k in _FOLLOW_UP_FIELDS}
        if state.component and int(response_type) == hikari.ResponseType.MESSAGE_CREATE:
            await self._rest.execute_webhook(application, token, content, **follow_up)
            return
        if not state.component and _ephemeral(kwargs.get("flags")):
            await self._rest.edit_interaction_response(application, token, PRIVATE_PLACEHOLDER)
            await self._rest.execute_webhook(application, token, content, **follow_up)
            await self._rest.delete_interaction_response(application, token)
            self.privately_answered += 1
            return
        allowed = {k: v for k, v in kwargs.items() if k in _EDIT_FIELDS}
        await self._rest.edit_interaction_response(application, token, content, **allowed)

    async def create_modal_response(
        self,
        interaction: hikari.SnowflakeishOr[hikari.PartialInteraction],
        token: str,
        **kwargs: typing.Any,
    ) -> typing.Any:
        """Open a modal: the initial response, so the timer must not defer after it."""
        state = self._states.get(int(interaction))
        if state is None:
            return await self._rest.create_modal_response(interaction, token, **kwargs)
        async with state.lock:
            if state.deferred:
                raise ModalAfterDeferralError(
                    "a modal can only be an interaction's first response and this one was "
                    "deferred after 2 s; declare the command with opens_modal=True"
                )
            state.responded = True
            return await self._rest.create_modal_response(interaction, token, **kwargs)

    @contextlib.asynccontextmanager
    async def guard(
        self, payload: dict[str, typing.Any], received_at: float
    ) -> typing.AsyncIterator[None]:
        """Run a handler for ``payload`` (an INTERACTION_CREATE) under the deadline."""
        kind = payload.get("type")
        if kind not in (2, 3, 5):  # autocomplete and ping cannot be deferred
            yield
            return
        interaction_id = int(payload["id"])
        # A click, or a modal a click opened, has a message to update (Interaction Object:
        # ``message``, "for components or modals triggered by components"); a modal a command
        # opened has none, so it is deferred as a command is (Interaction Callback Type 6
        # DEFERRED_UPDATE_MESSAGE is "only valid for component-based interactions").
        component = kind == _COMPONENT or (kind == _MODAL_SUBMIT and "message" in payload)
        state = _State(int(payload["application_id"]), payload["token"], component)
        self._states[interaction_id] = state
        timer: asyncio.Task[None] | None = None
        if not self._may_open_modal(payload):
            delay = defer_delay(payload, received_at, time.time())
            timer = asyncio.get_running_loop().create_task(
                self._defer_later(interaction_id, state, delay, component=component)
            )
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timer
            self._states.pop(interaction_id, None)

    def _may_open_modal(self, payload: dict[str, typing.Any]) -> bool:
        try:
            return self.opens_modal(payload)
        except Exception:  # unknown means the usual deadline, never a lost answer
            _LOGGER.exception("could not tell whether an interaction opens a modal")
            return False

    async def _defer_later(
        self, interaction_id: int, state: _State, delay: float, *, component: bool
    ) -> None:
        await asyncio.sleep(delay)
        async with state.lock:
            if state.responded:
                return
            response_type = (
                hikari.ResponseType.DEFERRED_MESSAGE_UPDATE
                if component
                else hikari.ResponseType.DEFERRED_MESSAGE_CREATE
            )
            try:
                await self._rest.create_interaction_response(
                    interaction_id, state.token, response_type
                )
            except hikari.HTTPError as exc:
                _LOGGER.warning("could not defer an interaction", extra={"error": str(exc)})
                return
            state.deferred = True
            self.auto_deferred += 1


_EDIT_FIELDS: typing.Final = frozenset(
    {
        "attachment",
        "attachments",
        "component",
        "components",
        "embed",
        "embeds",
        "mentions_everyone",
        "user_mentions",
        "role_mentions",
    }
)
_FOLLOW_UP_FIELDS: typing.Final = _EDIT_FIELDS | {"flags", "tts", "poll"}
#: What the public "thinking..." message says for the moment before it is deleted.
PRIVATE_PLACEHOLDER: typing.Final = "Answered privately."


def _ephemeral(flags: typing.Any) -> bool:
    return isinstance(flags, int) and bool(flags & hikari.MessageFlag.EPHEMERAL)
