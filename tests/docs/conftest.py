"""The docs' examples run on a real worker: the gateway tests' stack fixture, shared."""

from __future__ import annotations

from tests.gateway.conftest import stack

__all__ = ["stack"]
