"""The one place that reaches into hikari's private shard state.

hikari 2.7 has no public API for two things a hand-off needs:

* resuming a session another process started: ``_session_id``, ``_seq`` and
  ``_resume_gateway_url`` set before ``start()`` make the shard send RESUME (op 6);
* closing without ending the session: ``close()`` sends 1001 GOING_AWAY, which Discord
  documents as invalidating it. Marking the transport's close as already sent and closing the
  socket ourselves with 3000 (hikari's own "reconnect" code) leaves the session resumable.

It also gates every IDENTIFY through a coordinator (:class:`CoordinatedShard` overrides the
private ``_connect``, which identifies whenever the shard has no ``_seq``), reads the seq of
the dispatch being consumed, and pauses the socket's reads for back-pressure.
:func:`check_compatibility` fails loudly when a hikari upgrade moves any of it; a test calls
it, and so does the gateway at start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import typing

import hikari
from hikari.impl import shard as shard_impl

__all__: typing.Sequence[str] = (
    "HIKARI_VERSION",
    "RESUME_CLOSE_CODE",
    "CoordinatedShard",
    "HikariIncompatibleError",
    "SessionState",
    "check_compatibility",
    "close_keeping_session",
    "current_seq",
    "pause_reading",
    "restore_session",
    "resume_reading",
    "session_state",
)

#: The version this module was written against (pyproject pins it exactly).
HIKARI_VERSION: typing.Final[str] = "2.7.0"
#: Any code but 1000/1001 keeps the session; hikari uses 3000 for its own reconnects.
RESUME_CLOSE_CODE: typing.Final[int] = 3000
_SHARD_ATTRIBUTES: typing.Final = ("_session_id", "_seq", "_resume_gateway_url", "_ws")
_TRANSPORT_ATTRIBUTES: typing.Final = ("_sent_close", "_ws", "_exit_stack")


class HikariIncompatibleError(RuntimeError):
    """The installed hikari no longer has what this adapter relies on."""


@dataclasses.dataclass(frozen=True, slots=True)
class SessionState:
    session_id: str
    seq: int
    resume_url: str


def check_compatibility() -> None:
    """Raise :class:`HikariIncompatibleError` unless hikari still looks as this module needs."""
    if hikari.__version__ != HIKARI_VERSION:
        raise HikariIncompatibleError(
            f"hikari {hikari.__version__} installed; gateway/hikari_adapter.py was written for "
            f"{HIKARI_VERSION}: re-check the private attributes it uses, then update it"
        )
    slots = set(getattr(shard_impl.GatewayShardImpl, "__slots__", ()))
    missing = [name for name in _SHARD_ATTRIBUTES if name not in slots]
    transport_slots = set(getattr(shard_impl._GatewayTransport, "__slots__", ()))  # noqa: SLF001
    missing += [f"transport.{n}" for n in _TRANSPORT_ATTRIBUTES if n not in transport_slots]
    connect = getattr(shard_impl.GatewayShardImpl, "_connect", None)
    if connect is None or not inspect.iscoroutinefunction(connect):
        missing.append("_connect()")
    if missing:
        raise HikariIncompatibleError(f"hikari's shard lost attributes: {', '.join(missing)}")


class CoordinatedShard(shard_impl.GatewayShardImpl):
    """hikari's shard, asking ``identify_gate`` before every connection that will IDENTIFY."""

    __slots__ = ("_abandoned", "_connecting", "identify_gate", "identify_sent", "resuming")

    def __init__(
        self,
        *,
        identify_gate: typing.Callable[[int], typing.Awaitable[None]],
        identify_sent: typing.Callable[[int], typing.Awaitable[None]],
        **kwargs: typing.Any,
    ) -> None:
        super().__init__(**kwargs)
        self.identify_gate = identify_gate
        self.identify_sent = identify_sent
        self._abandoned = False
        self._connecting: asyncio.Task[typing.Any] | None = None
        #: This connection sent RESUME and RESUMED has not come yet: what it dispatches now
        #: is Discord's replay of what the session missed (discord-api-docs, Gateway,
        #: "Resuming": the gateway sends the missed events in order, finishing with a Resumed
        #: event to signal that replay has finished and all subsequent events are new).
        self.resuming = False

    def abandon(self) -> None:
        """Stop a shard whose ``start()`` has not finished (hikari's ``close()`` only stops a
        started one): its pending connection, perhaps queued for an identify slot, never
        opens a session."""
        self._abandoned = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()

    async def _connect(self) -> tuple[asyncio.Task[None], ...]:
        # Runs inside hikari's keep-alive task, which start() does not expose until READY.
        self._connecting = asyncio.current_task()
        if self._abandoned:
            raise asyncio.CancelledError
        if self._seq is not None:
            self.resuming = True
            return await super()._connect()
        # No session to resume: this connection will IDENTIFY. Wait for the pool's slot...
        await self.identify_gate(self.id)
        if self._abandoned:
            raise asyncio.CancelledError
        tasks = await super()._connect()
        # ...and hold it for a whole window from now: super()._connect() returns once READY
        # has arrived, so the window counts from after the IDENTIFY Discord saw. Shielded: a
        # shard stopped at this moment must not cancel the Redis write mid-command (redis-py
        # then takes its socket timeout, 5 s, to give the connection up).
        await asyncio.shield(self.identify_sent(self.id))
        return tasks


def restore_session(shard: shard_impl.GatewayShardImpl, state: SessionState) -> None:
    """Make the next ``start()`` RESUME ``state`` instead of identifying."""
    if shard.is_alive:
        raise RuntimeError("restore a session before starting the shard")
    shard._session_id = state.session_id  # noqa: SLF001
    shard._seq = state.seq  # noqa: SLF001
    shard._resume_gateway_url = state.resume_url  # noqa: SLF001


def session_state(shard: shard_impl.GatewayShardImpl) -> SessionState | None:
    """The shard's current session, or ``None`` when it has none (or lost it)."""
    session_id = shard._session_id  # noqa: SLF001
    seq = shard._seq  # noqa: SLF001
    url = shard._resume_gateway_url  # noqa: SLF001
    if session_id is None or seq is None or url is None:
        return None
    return SessionState(session_id, seq, url)


def current_seq(shard: shard_impl.GatewayShardImpl) -> int:
    """The ``s`` of the dispatch being consumed (hikari sets it before consuming)."""
    return shard._seq or 0  # noqa: SLF001


async def close_keeping_session(shard: shard_impl.GatewayShardImpl) -> None:
    """Stop the shard and close its socket with 3000, so that a successor can RESUME."""
    transport = shard._ws  # noqa: SLF001
    if transport is not None:
        # hikari's close() would send 1001 GOING_AWAY; make it believe a close was sent.
        transport._sent_close = True  # noqa: SLF001
    if shard.is_alive:
        await shard.close()
    elif isinstance(shard, CoordinatedShard):
        shard.abandon()
    if transport is not None:
        try:
            await asyncio.wait_for(
                transport._ws.close(code=RESUME_CLOSE_CODE, message=b"handing off"),  # noqa: SLF001
                timeout=5,
            )
        except TimeoutError:
            pass
        finally:
            # What hikari's own send_close would have done: release the HTTP session.
            await transport._exit_stack.aclose()  # noqa: SLF001


def _socket_transport(shard: shard_impl.GatewayShardImpl) -> typing.Any:
    transport = shard._ws  # noqa: SLF001
    if transport is None:
        return None
    connection = getattr(transport._ws, "_conn", None)  # noqa: SLF001
    return getattr(connection, "transport", None)


def pause_reading(shard: shard_impl.GatewayShardImpl) -> bool:
    """Stop reading the shard's socket (back-pressure); ``False`` if not connected."""
    transport = _socket_transport(shard)
    if transport is None or not transport.is_reading():
        return False
    transport.pause_reading()
    return True


def resume_reading(shard: shard_impl.GatewayShardImpl) -> None:
    transport = _socket_transport(shard)
    if transport is not None and not transport.is_reading():
        transport.resume_reading()
