"""How the emulated gateway behaves: Discord's numbers by default, tests' numbers when asked."""

from __future__ import annotations

import dataclasses

from playground.discord import protocol


@dataclasses.dataclass(slots=True, kw_only=True)
class GatewayOptions:
    """How the emulated gateway behaves; defaults are Discord's."""

    heartbeat_interval: float = 41.25
    """Seconds, sent in HELLO as milliseconds."""
    heartbeat_tolerance: float = 1.5
    """A connection with no heartbeat for ``interval * tolerance`` is closed (4009)."""
    max_concurrency: int = 1
    identify_window: float = 5.0
    session_start_total: int = 1000
    session_start_remaining: int = 1000
    session_start_reset_after: float = 24 * 3600.0
    """Seconds of one session-start window (Discord's is a day; tests shorten it to seconds).
    discord-api-docs, Gateway, "Get Gateway Bot" / "Session Start Limit Object": ``total``,
    ``remaining``, and ``reset_after``, "the number of milliseconds after which the limit
    resets" (sent as milliseconds, see ``handshakes.Handshakes.session_start_limit``)."""
    recommended_shards: int = 1
    commands_per_minute: int = 120
    command_window: float = 60.0
    session_timeout: float = 120.0
    """How long a disconnected session stays resumable."""
    replay_buffer: int = 100_000
    """Dispatches kept per session for replay on RESUME."""
    max_guilds_per_shard: int = 2500
    privileged_intents: int = protocol.PRIVILEGED_INTENTS
    """Privileged intents enabled in the 'developer portal'."""
