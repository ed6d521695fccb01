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


@dataclasses.dataclass(slots=True)
class Records:
    """Everything recorded since the emulator started (or since ``clear()``)."""

    identifies: list[IdentifyRecord] = dataclasses.field(default_factory=list)
    resumes: list[ResumeRecord] = dataclasses.field(default_factory=list)
    commands: list[GatewayCommandRecord] = dataclasses.field(default_factory=list)
    closes: list[CloseRecord] = dataclasses.field(default_factory=list)
    rest: list[RestCallRecord] = dataclasses.field(default_factory=list)
    identify_violations: list[IdentifyRecord] = dataclasses.field(default_factory=list)
    token_resets: int = 0

    @property
    def rate_limited(self) -> list[RestCallRecord]:
        """REST calls answered with 429."""
        return [call for call in self.rest if call.status == 429]

    def clear(self) -> None:
        for field in ("identifies", "resumes", "commands", "closes", "rest", "identify_violations"):
            getattr(self, field).clear()
        self.token_resets = 0
