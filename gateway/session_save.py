"""Saving a stopping shard's session while Redis may be away (soak seed 2).

A gateway told to stop (SIGTERM, a lease moving, a shard restart) closes each shard keeping
its session, and writes the session's last confirmed seq to Redis so that a successor RESUMEs
it: what Discord dispatches in between is replayed. If Redis does not answer at that moment
(hung, restarting, perhaps empty, or failing over), a single attempt loses the session: the
successor IDENTIFYs and the events in between are gone. So the save is retried until Redis takes it,
within :data:`SAVE_GRACE` of the shard's stop: the gateway's ``stop_grace_period`` (30 s in
``stack.yml``, docs/operations.md) must still leave room for the rest of the close (giving the
leases back, closing the broker) before the orchestrator's SIGKILL. The checkpoint script
re-creates a record Redis lost, so a Redis that came back empty takes the session whole. An
error Redis answers (a NOPERM of a misconfigured ACL) is not waited for: it would not pass.

One log line when shards start waiting, one when Redis took them, one per shard whose grace
ran out; session ids are never logged.
"""

from __future__ import annotations

import logging
import typing

import redis.exceptions

from shared import clock as clock_module
from shared import redis_client

if typing.TYPE_CHECKING:
    from gateway import sessions

__all__: typing.Sequence[str] = ("SAVE_GRACE", "SessionSaver")

_LOGGER = logging.getLogger("shardline.gateway.session_save")

#: How long after a shard's stop began its session may still be saved: 20 s of the gateway's
#: 30 s ``stop_grace_period``, the rest for the leases, the broker and Redis to close.
SAVE_GRACE: typing.Final[float] = 20.0
#: Redis answered with an error, but one that passes: a cluster or a Sentinel pool failing over.
_PASSING_ANSWERS: typing.Final[tuple[type[BaseException], ...]] = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ReadOnlyError,
)
#: Waits between attempts while Redis does not answer (doubling up to the cap).
_RETRY_FIRST: typing.Final[float] = 0.2
_RETRY_CAP: typing.Final[float] = 2.0


class SessionSaver:
    """Writes stopping shards' checkpoints, waiting for Redis up to a deadline."""

    __slots__ = ("_clock", "_store", "_waiting", "_waiting_since")

    def __init__(
        self, store: sessions.SessionStore, *, clock: clock_module.Clock | None = None
    ) -> None:
        self._store = store
        self._clock = clock or clock_module.SystemClock()
        #: Shards waiting for Redis to take their session, and since when the first did.
        self._waiting = 0
        self._waiting_since = 0.0

    def deadline(self) -> float:
        """The deadline of a stop beginning now (on the clock's monotonic time)."""
        return self._clock.monotonic() + SAVE_GRACE

    async def save(self, shard_id: int, mark: sessions.Checkpoint, deadline: float) -> bool:
        """Write ``mark``, retrying while Redis does not answer, until ``deadline``. True once
        Redis took it; False when the grace ran out first (said in the log)."""
        retry = _RETRY_FIRST
        waiting = False
        try:
            while True:
                try:
                    await self._store.checkpoint({shard_id: mark})
                except redis_client.REDIS_ERRORS as exc:
                    if not _away(exc):
                        raise  # an answer (NOPERM, WRONGTYPE): waiting would not change it
                    left = deadline - self._clock.monotonic()
                    if left <= 0:
                        _LOGGER.warning(
                            "stop grace ended before Redis took the shard's session; "
                            "its successor will IDENTIFY",
                            extra={"shard": shard_id, "error": str(exc)},
                        )
                        return False
                    if not waiting:
                        waiting = self._start_waiting(exc)
                    await self._clock.sleep(min(retry, left))
                    retry = min(retry * 2, _RETRY_CAP)
                    continue
                return True
        finally:
            if waiting:
                self._stop_waiting()

    def _start_waiting(self, exc: BaseException) -> bool:
        self._waiting += 1
        if self._waiting == 1:
            self._waiting_since = self._clock.monotonic()
            _LOGGER.warning(
                "Redis unavailable: stopping shards wait for it to take their sessions",
                extra={"error": str(exc), "grace": SAVE_GRACE},
            )
        return True

    def _stop_waiting(self) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            _LOGGER.info(
                "stopping shards done waiting for Redis",
                extra={"waited": round(self._clock.monotonic() - self._waiting_since, 1)},
            )


def _away(exc: BaseException) -> bool:
    """Redis did not answer (down, hung, restarting, failing over): worth waiting for."""
    return not isinstance(exc, redis.exceptions.ResponseError) or isinstance(exc, _PASSING_ANSWERS)
