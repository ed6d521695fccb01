"""A string that never shows itself in logs, reprs or tracebacks."""

from __future__ import annotations

import typing

__all__: typing.Sequence[str] = ("Secret",)


class Secret:
    """Wraps a secret value; ``str()`` and ``repr()`` print a mask, ``reveal()`` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself: only for handing it to the library that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
