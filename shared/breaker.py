"""A circuit breaker in front of a dependency (Redis, MongoDB) on a hot path.

A dependency that refuses is noticed at once; one that accepts connections and never answers
costs every caller its socket timeout, and a hot path (an interaction, a publish) that waits on
it misses Discord's 3 s. The breaker bounds both:

* **closed**: calls go through, each with a deadline (``deadline`` seconds); a call that misses
  it fails with :class:`DeadlineExceeded`. ``failures`` failures in a row open the breaker.
* **open**: calls fail at once with :class:`BreakerOpen`; callers take their fallback (publish
  without the cache write, per-replica dedupe and REST limits, the last settings copy).
* **half-open**: ``reset_after`` seconds after opening, one call (the probe) goes through; the
  others still fail at once. The probe's success closes the breaker, its failure opens it again.

Listeners (:meth:`CircuitBreaker.on_change`) hear every change of state: the gateway repairs
the cache writes it skipped when the breaker closes. Only what ``is_failure`` says counts: an
error answered by the server (a Redis ``WRONGTYPE``) is an answer, not an outage.

The open period runs on the injected clock (:mod:`shared.clock`); the deadline on the event
loop's own timer (``asyncio.timeout``), one timer handle per call.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import typing

if typing.TYPE_CHECKING:
    from shared import clock as clock_module

__all__: typing.Sequence[str] = (
    "BreakerOpen",
    "CircuitBreaker",
    "DeadlineExceeded",
    "State",
    "Unavailable",
)

_LOGGER = logging.getLogger("shardline.breaker")
_T = typing.TypeVar("_T")

#: Defaults for a Redis or MongoDB call on a hot path: three missed half-seconds open it, and a
#: probe every two seconds finds it back.
DEADLINE: typing.Final = 0.5
FAILURES: typing.Final = 3
RESET_AFTER: typing.Final = 2.0


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    @property
    def level(self) -> int:
        """As a metric: 0 closed, 1 half-open, 2 open."""
        return {"closed": 0, "half-open": 1, "open": 2}[self.value]


class Unavailable(Exception):  # noqa: N818 - a state of the dependency, not a programming error
    """The call did not reach an answer; take the fallback."""


class BreakerOpen(Unavailable):
    """Refused at once: the breaker is open (or half-open with its probe under way)."""


class DeadlineExceeded(Unavailable):
    """The call missed its deadline; the dependency is hung or far too slow."""


Listener = typing.Callable[["State", "State"], None]


class CircuitBreaker:
    """Closed, open or half-open, for one dependency of one process."""

    __slots__ = (
        "_clock",
        "_failures_in_row",
        "_is_failure",
        "_listeners",
        "_opened_at",
        "_probing",
        "_state",
        "deadline",
        "failures",
        "name",
        "opened",
        "refused",
        "reset_after",
        "timeouts",
    )

    def __init__(
        self,
        name: str,
        *,
        clock: clock_module.Clock,
        deadline: float = DEADLINE,
        failures: int = FAILURES,
        reset_after: float = RESET_AFTER,
        is_failure: typing.Callable[[BaseException], bool] = lambda _: True,
    ) -> None:
        self.name = name
        self.deadline = deadline
        self.failures = failures
        self.reset_after = reset_after
        self._clock = clock
        self._is_failure = is_failure
        self._state = State.CLOSED
        self._failures_in_row = 0
        self._opened_at = 0.0
        self._probing = False
        self._listeners: list[Listener] = []
        #: How often it opened, how many calls it refused at once, how many missed the deadline.
        self.opened = 0
        self.refused = 0
        self.timeouts = 0

    @property
    def state(self) -> State:
        if (
            self._state is State.OPEN
            and self._clock.monotonic() - self._opened_at >= self.reset_after
        ):
            self._set(State.HALF_OPEN)
        return self._state

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def call(self, function: typing.Callable[[], typing.Awaitable[_T]]) -> _T:
        """``function()`` within the deadline, or :class:`Unavailable` at once when open."""
        state = self.state
        probe = False
        if state is State.OPEN or (state is State.HALF_OPEN and self._probing):
            self.refused += 1
            raise BreakerOpen(f"{self.name} unavailable (circuit breaker {state.value})")
        if state is State.HALF_OPEN:
            probe = self._probing = True
        try:
            try:
                async with asyncio.timeout(self.deadline):
                    result = await function()
            except TimeoutError:
                self.timeouts += 1
                raise DeadlineExceeded(
                    f"{self.name} did not answer within {self.deadline:g} s"
                ) from None
        except BaseException as exc:
            if isinstance(exc, DeadlineExceeded) or (
                isinstance(exc, Exception) and self._is_failure(exc)
            ):
                self._failed()
            elif probe:
                self._probing = False  # cancelled: the next call probes instead
            raise
        finally:
            if probe:
                self._probing = False
        self._succeeded()
        return result

    def record_failure(self) -> None:
        """A failure seen outside :meth:`call` (a connection that dropped on its own)."""
        self._failed()

    # --- internals ----------------------------------------------------------------------------

    def _failed(self) -> None:
        self._failures_in_row += 1
        if self._state is State.HALF_OPEN or (
            self._state is State.CLOSED and self._failures_in_row >= self.failures
        ):
            self._opened_at = self._clock.monotonic()
            self.opened += 1
            self._set(State.OPEN)

    def _succeeded(self) -> None:
        self._failures_in_row = 0
        if self._state is not State.CLOSED:
            self._set(State.CLOSED)

    def _set(self, state: State) -> None:
        previous, self._state = self._state, state
        if previous is state:
            return
        log = _LOGGER.warning if state is State.OPEN else _LOGGER.info
        log(
            "circuit breaker %s",
            state.value,
            extra={"breaker": self.name, "previous": previous.value},
        )
        for listener in list(self._listeners):
            try:
                listener(previous, state)
            except Exception:
                _LOGGER.exception("breaker listener failed", extra={"breaker": self.name})
