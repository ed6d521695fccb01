"""The one module touching lavalink.py's private state, and the adaptations it needs.

Pinned to lavalink.py 5.11.1 (pyproject.toml): :func:`check_compatibility` fails the gateway at
start, not in the middle of a hand-off, if an upgrade moved what is used here.
"""

from __future__ import annotations

import logging
import typing

import aiohttp
import lavalink  # type: ignore[import-untyped]
import orjson

from shared import redis_client

__all__: typing.Sequence[str] = (
    "check_compatibility",
    "entries",
    "quiet_logs",
    "resume_on_reconnect",
)

_LOGGER = logging.getLogger("shardline.gateway.voice")


def check_compatibility() -> None:
    """Fail at start, not mid-hand-off, if lavalink.py changed what this module relies on."""
    if lavalink.__version__ != "5.11.1":
        raise RuntimeError(
            f"gateway/lavalink_adapter.py is for lavalink.py 5.11.1, not {lavalink.__version__}"
        )
    for name in ("_transport",):
        if name not in lavalink.Node.__slots__:
            raise RuntimeError(f"lavalink.Node lost {name}; see gateway/lavalink_adapter.py")


def resume_on_reconnect(client: lavalink.Client) -> None:
    """Make lavalink.py send the *current* session id when its WebSocket reconnects.

    lavalink.py 5.11.1 builds the handshake headers once per connection task, so a reconnect
    after a drop sends no ``Session-Id`` (or a stale one) and Lavalink opens a new session
    with no players. An aiohttp trace hook on its HTTP session sets the header from the
    node's current session id (one node per host:port here, so the match is exact).
    """

    async def on_request_start(
        session: aiohttp.ClientSession,
        context: typing.Any,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        del session, context
        if not params.url.path.endswith("/websocket"):
            return
        for node in client.node_manager.nodes:
            transport = node._transport  # noqa: SLF001 - see the docstring
            here = (transport._host, transport._port)  # noqa: SLF001
            if (params.url.host, params.url.port) == here and transport.session_id:
                params.headers["Session-Id"] = transport.session_id

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    trace.freeze()
    client._session._trace_configs.append(trace)  # noqa: SLF001


def entries(raw: dict[typing.Any, typing.Any]) -> list[tuple[str, dict[str, typing.Any]]]:
    """A hash of session id -> JSON, skipping (and logging) what cannot be read."""
    entries = []
    for key, value in raw.items():
        try:
            info = orjson.loads(value)
            if not isinstance(info, dict) or "node" not in info or "at" not in info:
                raise ValueError("missing node or at")  # noqa: TRY301 - one path for bad data
            float(info["at"])
        except (ValueError, TypeError, orjson.JSONDecodeError):
            _LOGGER.warning("unreadable Lavalink session entry skipped")
            continue
        entries.append((redis_client.text(key), info))
    return entries


class _NoPlayerNoise(logging.Filter):
    """lavalink.py warns about every event for a guild it has no player object for; here that
    is every event (players are not kept in lavalink.py), so the warning says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "non-existent player" not in str(record.msg)


def quiet_logs() -> None:
    library = logging.getLogger("lavalink")
    # At DEBUG lavalink.py logs request bodies, which carry Discord voice tokens.
    if library.getEffectiveLevel() < logging.INFO:
        library.setLevel(logging.INFO)
    transport = logging.getLogger("lavalink.transport")
    if not any(isinstance(f, _NoPlayerNoise) for f in transport.filters):
        transport.addFilter(_NoPlayerNoise())
