"""Slash and prefix commands from one definition, for every replica of a worker group."""

from __future__ import annotations

import typing

from worker.commands.components import ComponentContext
from worker.commands.context import Context
from worker.commands.modals import TextInput
from worker.commands.model import Command, Cooldown, MaxConcurrency
from worker.commands.options import ArgumentError, option
from worker.commands.router import CommandRouter

__all__: typing.Sequence[str] = (
    "ArgumentError",
    "Command",
    "CommandRouter",
    "ComponentContext",
    "Context",
    "Cooldown",
    "MaxConcurrency",
    "TextInput",
    "option",
)
