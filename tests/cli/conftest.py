from __future__ import annotations

import pytest

from tests.gateway.conftest import Stack, stack


@pytest.fixture
def operator_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads the same environment as the pool's processes."""
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)


__all__ = ["operator_env", "stack"]
