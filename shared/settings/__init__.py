"""Persistent guild and user settings and moderation records (MongoDB, cached in Redis)."""

from __future__ import annotations

import typing

from shared.settings.documents import (
    GuildSettings,
    Infraction,
    InfractionKind,
    SettingsValidationError,
    UserSettings,
)
from shared.settings.store import SettingsStore, SettingsUnavailableError, connect

__all__: typing.Sequence[str] = (
    "GuildSettings",
    "Infraction",
    "InfractionKind",
    "SettingsStore",
    "SettingsUnavailableError",
    "SettingsValidationError",
    "UserSettings",
    "connect",
)
