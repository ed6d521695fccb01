"""Counters of where the settings store's reads and writes went, for metrics and tests."""

from __future__ import annotations

import dataclasses
import typing

__all__: typing.Sequence[str] = ("SettingsStats",)


@dataclasses.dataclass(slots=True)
class SettingsStats:
    local_hits: int = 0
    redis_hits: int = 0
    mongo_reads: int = 0
    mongo_writes: int = 0
    mongo_failures: int = 0
    redis_failures: int = 0
    migrations: int = 0
