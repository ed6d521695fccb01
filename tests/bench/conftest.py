"""The soak's marker: ``-m soak`` runs only it, ``-m 'not soak'`` leaves it out."""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: the randomized fault soak (bench/soak), ~2 min")
