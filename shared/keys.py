"""The whole Redis key schema and its TTLs, in one place.

Every key starts with ``{namespace}:{pool}:`` so that pools (and test runs) sharing one Redis
never collide. Numbers are seconds.
"""

from __future__ import annotations

import typing

__all__: typing.Sequence[str] = (
    "DEDUPE_TTL",
    "HEALTH_TTL",
    "IDENTIFY_WINDOW",
    "LEASE_TTL",
    "MESSAGE_CACHE_TTL",
    "PROMPT_TTL",
    "REST_CACHE_TTL",
    "SESSION_TTL",
    "RedisKeys",
)

#: A stored Discord session is useless once Discord has forgotten it (a few minutes after the
#: connection drops); keep it a little longer than that, refreshed on every checkpoint.
SESSION_TTL: typing.Final[int] = 15 * 60
#: A shard lease expires this long after its holder stopped renewing it (renewed every third).
LEASE_TTL: typing.Final[int] = 15
#: Discord allows one IDENTIFY per bucket per 5 seconds.
IDENTIFY_WINDOW: typing.Final[float] = 5.0
#: How long a handled envelope's key is remembered: longer than any resume replay can reach.
DEDUPE_TTL: typing.Final[int] = 10 * 60
#: How long a prompt (a handler waiting for a user's next message) may wait at most.
PROMPT_TTL: typing.Final[int] = 15 * 60
#: Cached messages (an optional cache resource) expire after this.
MESSAGE_CACHE_TTL: typing.Final[int] = 60 * 60
#: Objects workers fetched over REST (never overwriting gateway-written data).
REST_CACHE_TTL: typing.Final[int] = 5 * 60
#: A process's health key; its absence means the process is gone.
HEALTH_TTL: typing.Final[int] = 30


class RedisKeys:
    """Key patterns for one namespace and pool."""

    __slots__ = ("_prefix", "namespace", "pool")

    def __init__(self, namespace: str, pool: str) -> None:
        self.namespace = namespace
        self.pool = pool
        self._prefix = f"{namespace}:{pool}"

    @property
    def prefix(self) -> str:
        """Every key of this pool starts with this (used for clean-up and scans)."""
        return self._prefix

    # gateway: sessions, leases, identify coordination
    def session(self, shard_id: int) -> str:
        """Hash: session_id, seq, resume_gateway_url, shard_count of a shard's Discord session."""
        return f"{self._prefix}:session:{shard_id}"

    def lease(self, shard_id: int) -> str:
        """String: the gateway id holding the shard, with ``LEASE_TTL``."""
        return f"{self._prefix}:lease:{shard_id}"

    def gateways(self) -> str:
        """Sorted set: live gateway ids scored by their last heartbeat (for rebalancing)."""
        return f"{self._prefix}:gateways"

    def identify_bucket(self, bucket: int) -> str:
        """String with ``IDENTIFY_WINDOW`` expiry: set while a bucket's identify slot is taken."""
        return f"{self._prefix}:identify:{bucket}"

    def session_start_ledger(self) -> str:
        """Hash: remaining, total, reset_at of the session start limit, shared by the pool."""
        return f"{self._prefix}:session-start"

    def interests(self, group: str) -> str:
        """Set: event names a worker group listens to (selective forwarding)."""
        return f"{self._prefix}:interests:{group}"

    # workers
    def dedupe(self, envelope_key: str) -> str:
        """String with ``DEDUPE_TTL``: set once an envelope has been taken for handling."""
        return f"{self.namespace}:dedupe:{envelope_key}"

    def cooldown(self, command: str, scope: str) -> str:
        return f"{self._prefix}:cooldown:{command}:{scope}"

    def concurrency(self, command: str, scope: str) -> str:
        return f"{self._prefix}:concurrency:{command}:{scope}"

    def prompt_channel(self) -> str:
        """Pub/sub channel on which answers to prompts are published to every replica."""
        return f"{self._prefix}:prompts"

    def health(self, process_id: str) -> str:
        return f"{self._prefix}:health:{process_id}"

    # cache (written by the gateway, read by workers)
    def guild(self, guild_id: int) -> str:
        return f"{self._prefix}:guild:{guild_id}"

    def guild_channels(self, guild_id: int) -> str:
        return f"{self._prefix}:guild:{guild_id}:channels"

    def guild_roles(self, guild_id: int) -> str:
        return f"{self._prefix}:guild:{guild_id}:roles"

    def guild_emojis(self, guild_id: int) -> str:
        return f"{self._prefix}:guild:{guild_id}:emojis"

    def guild_members(self, guild_id: int) -> str:
        return f"{self._prefix}:guild:{guild_id}:members"

    def guild_voice_states(self, guild_id: int) -> str:
        return f"{self._prefix}:guild:{guild_id}:voice"

    def guild_presences(self, guild_id: int) -> str:
        return f"{self._prefix}:guild:{guild_id}:presences"

    def shard_guilds(self, shard_id: int) -> str:
        """Set: ids of the guilds a shard delivered (dropped when the shard re-identifies)."""
        return f"{self._prefix}:shard:{shard_id}:guilds"

    def channel(self, channel_id: int) -> str:
        return f"{self._prefix}:channel:{channel_id}"

    def user(self, user_id: int) -> str:
        """Users are shared across guilds and stored once."""
        return f"{self._prefix}:user:{user_id}"

    def message(self, channel_id: int, message_id: int) -> str:
        return f"{self._prefix}:message:{channel_id}:{message_id}"
