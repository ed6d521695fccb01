"""What the bot did to the emulated Discord, read back by tests and benchmarks."""

from __future__ import annotations

import dataclasses
import typing


@dataclasses.dataclass(frozen=True, slots=True)
class IdentifyRecord:
    at: float
    shard_id: int
    shard_count: int
    bucket: int
    intents: int
    accepted: bool
    reason: str
    session_id: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class ResumeRecord:
    at: float
    session_id: str
    seq: int
    shard_id: int | None
    accepted: bool
    replayed: int
    reason: str
    path: str
    """``/resume`` when the client used READY's ``resume_gateway_url``, as it should."""


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayCommandRecord:
    at: float
    shard_id: int
    op: int
    d: typing.Any


@dataclasses.dataclass(frozen=True, slots=True)
class CloseRecord:
    at: float
    shard_id: int | None
    code: int
    by_client: bool
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class RestCallRecord:
    at: float
    method: str
    path: str
    route: str
    status: int
    body: typing.Any
    bucket: str | None
    remaining: int | None = None
    """``X-RateLimit-Remaining`` of the answer, when it had one."""


Listener = typing.Callable[[str, object], None]
"""Told ``(kind, record)`` as each record is added; ``kind`` is the list's field name."""


class _Log(list[typing.Any]):
    """A list that tells the records' listeners about each appended record."""

    def __init__(self, kind: str, listeners: list[Listener]) -> None:
        super().__init__()
        self._kind = kind
        self._listeners = listeners

    def append(self, item: typing.Any) -> None:
        super().append(item)
        for listener in self._listeners:
            listener(self._kind, item)


_LOGS: typing.Final = ("identifies", "resumes", "commands", "closes", "rest", "identify_violations")


@dataclasses.dataclass(slots=True)
class Records:
    """Everything recorded since the emulator started (or since ``clear()``).

    ``listeners`` are told about each record as it is added (the playground's live page).
    """

    identifies: list[IdentifyRecord] = dataclasses.field(default_factory=list)
    resumes: list[ResumeRecord] = dataclasses.field(default_factory=list)
    commands: list[GatewayCommandRecord] = dataclasses.field(default_factory=list)
    closes: list[CloseRecord] = dataclasses.field(default_factory=list)
    rest: list[RestCallRecord] = dataclasses.field(default_factory=list)
    identify_violations: list[IdentifyRecord] = dataclasses.field(default_factory=list)
    token_resets: int = 0
    listeners: list[Listener] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        for kind in _LOGS:
            setattr(self, kind, _Log(kind, self.listeners))

    @property
    def rate_limited(self) -> list[RestCallRecord]:
        """REST calls answered with 429."""
        return [call for call in self.rest if call.status == 429]

    def clear(self) -> None:
        for kind in _LOGS:
            getattr(self, kind).clear()
        self.token_resets = 0
