"""Which resources the cache holds, switched on and off like twilight's resource flags."""

from __future__ import annotations

import enum
import typing


class CacheResource(enum.IntFlag):
    GUILDS = enum.auto()
    CHANNELS = enum.auto()
    THREADS = enum.auto()
    ROLES = enum.auto()
    EMOJIS = enum.auto()
    MEMBERS = enum.auto()
    USERS = enum.auto()
    VOICE_STATES = enum.auto()
    PRESENCES = enum.auto()
    MESSAGES = enum.auto()

    @classmethod
    def parse(cls, text: str) -> CacheResource:
        """``"all"``, ``"none"``, or names separated by commas (``GUILDS,ROLES``)."""
        value = cls(0)
        for item in text.replace("|", ",").split(","):
            name = item.strip().upper()
            if not name:
                continue
            if name == "ALL":
                value |= ALL
            elif name == "NONE":
                continue
            else:
                try:
                    value |= cls[name]
                except KeyError:
                    known = ", ".join(m.name or "" for m in cls)
                    raise ValueError(f"unknown cache resource {name!r}; known: {known}") from None
        return value


ALL: typing.Final = CacheResource(sum(int(m) for m in CacheResource))
#: Presences need a privileged intent and change constantly; messages grow without bound.
DEFAULT: typing.Final = ALL & ~CacheResource.PRESENCES & ~CacheResource.MESSAGES
