"""Module-level functions for the CPU pool tests (a pool process imports them by name)."""

from __future__ import annotations

import os
import time


def spin(seconds: float) -> int:
    """Busy for ``seconds`` of CPU, holding the GIL the whole time, as real CPU work does."""
    end = time.process_time() + seconds
    count = 0
    while time.process_time() < end:
        count += 1
    return count


def pid() -> int:
    return os.getpid()


def crash() -> None:
    os._exit(3)
