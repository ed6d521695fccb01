"""Worker tests run a real gateway too: the gateway tests' stack fixture, shared."""

from __future__ import annotations

from tests.gateway.conftest import stack

__all__ = ["stack"]
