"""What ``shardline``'s exit status means: one meaning per code, for scripts and cron jobs."""

from __future__ import annotations

import enum

__all__ = ("CommandError", "ExitCode")


class ExitCode(enum.IntEnum):
    """The exit status of a ``shardline`` command (documented in ``docs/operations.md``)."""

    OK = 0
    """Done, and nothing wrong found."""
    PROBLEM = 1
    """The command ran and found a problem, or refused what the pool's state does not allow:
    a re-shard plan with problems, a process that answered with an error, no such gateway or
    shard, a re-shard that cannot go on."""
    USAGE = 2
    """Bad arguments or configuration (argparse's own code): nothing was read or written."""
    UNAVAILABLE = 3
    """Redis or RabbitMQ cannot be reached, refuses the login, or fails a request."""
    TIMED_OUT = 4
    """What ``--wait`` (or ``reshard``) waited for did not happen in time."""
    NOT_AUTHORIZED = 5
    """A signed action without ``ADMIN_KEY``, or a re-shard record the key does not vouch for
    (the gateways would refuse it too)."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (128 + SIGINT, as shells report it); what was written stays."""


class CommandError(Exception):
    """Stops a command: its message goes to stderr as one line, ``code`` is the exit status."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
