"""The whole Redis key schema and its TTLs, in one place.

Every key starts with ``{namespace}:`` and names its pool, so that pools (and test runs)
sharing one Redis never collide. Numbers are seconds.

Hash tags (Redis Cluster): a cluster hashes only the text inside a key's first ``{...}``, and a
script, a MULTI or an MGET may only touch keys of one slot. So every key that is used together
with another carries the same tag, and the schema runs unchanged on one server, under Sentinel
and on a Cluster:

- ``{pool}`` (``ns:{main}:...``): the pool's coordination, small and read together: gateways,
  leases (read with one MGET), identify slots and the session-start ledger, drains, restarts,
  the re-shard record, interests, statuses and the worker list;
- ``{count:shard}`` (``ns:main:session:{16:3}``): a shard's session and its set of guilds;
- ``{guild}`` (``ns:main:g:{123}:c``): a guild's cache keys (its JSON, channels, roles, role
  permissions, emojis, member ids, voice states, presences) and its music queue and state;
- ``{pool:rest}``: the REST limiter, whose every request meets the global limit's keys;
- ``{pool:voice}``: Lavalink sessions and players (re-assigned together);
- ``{pool:components}``: component waits (a prompt sets several at once);
- ``{pool:shard:session}`` (``ns:dedupe:{main:3:abc}:42``): one event stream's dedupe marks.
Keys used alone (cooldowns, prompts, settings, schedules, service leases, messages, the member,
user and channel buckets) are not tagged: they spread over the whole cluster. Scripts receive
their keys in ``KEYS``; the exceptions are the dedupe script, which builds ``stream:seq``
from a declared stream key of the same tag (``worker/dedupe.py`` says why), so a cluster
still refuses any access outside the declared slot, and the cache snapshot script, which runs
on one server only (on a cluster ``shared/cache/snapshot.py`` reads with pipelines).
"""

from __future__ import annotations

import typing

__all__: typing.Sequence[str] = (
    "CACHE_BUCKET_FILL",
    "DEDUPE_HOLDER_TTL",
    "DEDUPE_TTL",
    "DEFAULT_CACHE_MEMBERS",
    "HEALTH_TTL",
    "IDENTIFY_WINDOW",
    "LEASE_TTL",
    "MESSAGE_CACHE_TTL",
    "PROMPT_TTL",
    "REST_CACHE_TTL",
    "SESSION_TTL",
    "SETTINGS_CACHE_TTL",
    "RedisKeys",
    "cache_bucket_bits",
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
#: Seconds a worker's holder key outlives its last refresh: how long a redelivered copy waits
#: before it takes over the claims of a worker that died (``kill -9``).
DEDUPE_HOLDER_TTL: typing.Final[int] = 3
#: How long a prompt (a handler waiting for a user's next message) may wait at most.
PROMPT_TTL: typing.Final[int] = 15 * 60
#: Settings copies in Redis expire after this (a copy a failed write could not refresh is
#: stale at most this long).
SETTINGS_CACHE_TTL: typing.Final[int] = 10 * 60
#: Cached messages (an optional cache resource) expire after this.
MESSAGE_CACHE_TTL: typing.Final[int] = 60 * 60
#: Objects workers fetched over REST (never overwriting gateway-written data).
REST_CACHE_TTL: typing.Final[int] = 5 * 60
#: A process's health key; its absence means the process is gone.
HEALTH_TTL: typing.Final[int] = 30
#: Members, users and the channel index are spread over ``2**bits`` small hashes ("buckets"),
#: sized to the population the cache is configured for (``CACHE_MEMBERS``): the fewest buckets
#: holding at most this many entries each on average. Fuller buckets would cost less per
#: entry, but Redis keeps a hash listpack-encoded (a few bytes per entry) only up to
#: ``hash-max-listpack-entries`` (128 by default) entries, and buckets fill unevenly: at an
#: average of 64 the fullest of 2**19 buckets (33 million members) holds about 106 (Poisson),
#: and at an average of 80 (a population 1.25 to 2.5 times the configured one) about 126.
CACHE_BUCKET_FILL: typing.Final[int] = 64
#: ``CACHE_MEMBERS`` when unset: 2**14 buckets, from 32 to 64 entries each between 500,000 and
#: 1 million members; a smaller cache pays more per member (each bucket's own cost shared by
#: fewer entries), a larger one may hold up to 1.25 times as many safely.
DEFAULT_CACHE_MEMBERS: typing.Final[int] = 1_000_000
#: Whatever the population, never fewer buckets than this (a cluster still spreads them) nor
#: more (2**26 buckets of 64 hold 4 billion members).
_MIN_BUCKET_BITS: typing.Final = 4
_MAX_BUCKET_BITS: typing.Final = 26
#: A guild has about a tenth as many channels as members (200 members and 20 channels; a
#: 100,000-member guild has a few hundred): the channel index has 2**3 times fewer buckets.
_CHANNEL_BUCKET_SHIFT: typing.Final = 3


def cache_bucket_bits(members: int) -> int:
    """How many bits of a hashed id name a member or user bucket when the cache holds about
    ``members`` members: the fewest with at most ``CACHE_BUCKET_FILL`` entries per bucket."""
    buckets = -(-max(members, 1) // CACHE_BUCKET_FILL)  # ceiling
    return min(max((buckets - 1).bit_length(), _MIN_BUCKET_BITS), _MAX_BUCKET_BITS)


class RedisKeys:
    """Key patterns for one namespace and pool."""

    __slots__ = (
        "_channel_bits",
        "_components",
        "_pooled",
        "_prefix",
        "_rest",
        "_voice",
        "bucket_bits",
        "namespace",
        "pool",
    )

    def __init__(
        self,
        namespace: str,
        pool: str,
        *,
        bucket_bits: int = cache_bucket_bits(DEFAULT_CACHE_MEMBERS),
    ) -> None:
        if not _MIN_BUCKET_BITS <= bucket_bits <= _MAX_BUCKET_BITS:
            msg = f"bucket_bits must be within {_MIN_BUCKET_BITS}..{_MAX_BUCKET_BITS}"
            raise ValueError(msg)
        self.namespace = namespace
        self.pool = pool
        #: The member and user buckets' layout (:func:`cache_bucket_bits`); every process of a
        #: pool must use the same, which :meth:`cache_layout` records.
        self.bucket_bits = bucket_bits
        self._channel_bits = max(bucket_bits - _CHANNEL_BUCKET_SHIFT, _MIN_BUCKET_BITS)
        self._prefix = f"{namespace}:{pool}"
        # The pool's tagged prefixes (see the module's docstring).
        self._pooled = f"{namespace}:{{{pool}}}"
        self._rest = f"{namespace}:{{{pool}:rest}}"
        self._voice = f"{namespace}:{{{pool}:voice}}"
        self._components = f"{namespace}:{{{pool}:components}}"

    @property
    def prefix(self) -> str:
        """Every key of this pool starts with this (used for clean-up and scans)."""
        return self._prefix

    # gateway: sessions, leases, identify coordination
    # Sessions and leases belong to a shard layout (the shard count): during a re-shard the
    # old layout's and the new one's run side by side and must not meet.
    def session(self, shard_id: int, shard_count: int) -> str:
        """Hash: session_id, seq, resume_gateway_url, shard_count of a shard's Discord session."""
        return f"{self._prefix}:session:{{{shard_count}:{shard_id}}}"

    def legacy_session(self, shard_id: int, shard_count: int) -> str:
        """Where :meth:`session` was before keys had hash tags: read once when the tagged one is
        missing, so a pool upgraded in place RESUMEs instead of IDENTIFYing every shard."""
        return f"{self._prefix}:session:{shard_count}:{shard_id}"

    def lease(self, shard_id: int, shard_count: int) -> str:
        """String: the gateway id holding the shard, with ``LEASE_TTL``."""
        return f"{self._pooled}:lease:{shard_count}:{shard_id}"

    def gateways(self) -> str:
        """Sorted set: every live gateway id scored by its last heartbeat."""
        return f"{self._pooled}:gateways"

    def layout_gateways(self, shard_count: int) -> str:
        """Sorted set: the live gateways running ``shard_count`` shards (they share them out)."""
        return f"{self._pooled}:gateways:{shard_count}"

    def reshard(self) -> str:
        """Hash: the pool's re-shard (``shared.reshard.Reshard``)."""
        return f"{self._pooled}:reshard"

    def identify_bucket(self, bucket: int) -> str:
        """String with ``IDENTIFY_WINDOW`` expiry: set while a bucket's identify slot is taken."""
        return f"{self._pooled}:identify:{bucket}"

    def identify_memory(self) -> str:
        """String, no expiry: when the pool's identify slots may first be handed out since this
        Redis lost what it held (0 once that has passed). Missing means Redis is new, or
        restarted empty or flushed, and the slots it held are gone (``gateway.identify``)."""
        return f"{self._pooled}:identify:memory"

    def redis_history(self) -> str:
        """Hash, no expiry: the replication id this Redis had when a gateway script last
        looked, and since when (ms, Redis's clock): a new id is a promoted replica
        (``gateway.redis_history``)."""
        return f"{self._pooled}:redis-history"

    def session_start_ledger(self) -> str:
        """Hash: remaining, total, reset_at of the session start limit, shared by the pool."""
        return f"{self._pooled}:session-start"

    def interests(self, group: str) -> str:
        """Set: event names a worker group listens to (selective forwarding)."""
        return f"{self._pooled}:interests:{group}"

    def interest_groups(self) -> str:
        """Set: the worker groups that registered interests (so gateways never SCAN)."""
        return f"{self._pooled}:interest-groups"

    def interests_channel(self) -> str:
        """Pub/sub channel: a group's name after its interests changed (``shared.interests``)."""
        return f"{self._pooled}:interests-changed"

    # workers
    def dedupe(self, envelope_key: str) -> str:
        """String with ``DEDUPE_TTL``: set once an envelope has been taken for handling
        (``{scope}:{seq}``: tagged by its stream, :meth:`dedupe_stream`)."""
        scope, _, seq = envelope_key.rpartition(":")
        return f"{self.dedupe_stream(scope)}:{seq}"

    def dedupe_stream(self, scope: str) -> str:
        """What every dedupe key of one event stream (``pool:shard:session``) starts with; the
        stream is the keys' hash tag."""
        return f"{self.namespace}:dedupe:{{{scope}}}"

    def dedupe_recovered(self) -> str:
        """String with ``worker.dedupe.HOLD_SETTLE`` expiry: set by the first replica whose
        call succeeds after a Redis outage; a replayed message waits while it exists."""
        return f"{self._pooled}:dedupe-recovered"

    def dedupe_holder(self, worker_id: str) -> str:
        """String with ``DEDUPE_HOLDER_TTL``, refreshed while the worker runs: its claims are
        in progress, so a redelivered copy waits for them instead of taking them over."""
        return f"{self.namespace}:dedupe-holder:{worker_id}"

    def settings(self, kind: str, entity_id: int) -> str:
        """String with ``SETTINGS_CACHE_TTL``: ``{rev}|`` + the BSON settings document of a
        guild or user (all pools share them)."""
        return f"{self.namespace}:settings:{kind}:{entity_id}"

    def settings_channel(self) -> str:
        """Pub/sub channel: ``{kind}:{id}:{rev}`` after every settings write."""
        return f"{self.namespace}:settings-changed"

    # REST rate limits, shared by every replica of a pool (one pool = one bot token)
    def rest_global(self) -> str:
        """String: the theoretical arrival time (ms) of the next request under the global
        limit (GCRA)."""
        return f"{self._rest}:rest:global"

    def rest_global_pause(self) -> str:
        """String with a TTL: after a global 429, no request before this time (ms)."""
        return f"{self._rest}:rest:global-pause"

    def rest_routes(self) -> str:
        """Hash: route (``METHOD /path/{template}``) -> Discord's bucket hash, or ``-``."""
        return f"{self._rest}:rest:routes"

    def rest_bucket_prefix(self) -> str:
        return f"{self._rest}:rest:bucket:"

    def rest_bucket(self, bucket: str, major: str) -> str:
        """Hash: limit, remaining, reset_at (ms), window (ms) of one bucket and major param."""
        return f"{self.rest_bucket_prefix()}{bucket}:{major}"

    def rest_discovery(self, what: str) -> str:
        """String with a TTL: one replica is making the first request that learns a bucket."""
        return f"{self._rest}:rest:discovery:{what}"

    def rest_invalid(self, window: int) -> str:
        """Counter: invalid requests (401, 403, non-shared 429) in one 10-minute window."""
        return f"{self._rest}:rest:invalid:{window}"

    def cooldown(self, command: str, scope: str) -> str:
        return f"{self._prefix}:cooldown:{command}:{scope}"

    def cooldown_notice(self, command: str, scope: str) -> str:
        """String, expiring with the cooldown: set once the scope was told to slow down."""
        return f"{self._prefix}:cooldown-notice:{command}:{scope}"

    def concurrency(self, command: str, scope: str) -> str:
        return f"{self._prefix}:concurrency:{command}:{scope}"

    def prompt_channel(self) -> str:
        """Pub/sub channel on which answers to prompts are published to every replica."""
        return f"{self._prefix}:prompts"

    def prompt(self, channel_id: int, user_id: int) -> str:
        """String with the prompt's timeout: the id of the prompt waiting for this user's next
        message in this channel (whichever replica consumes the message forwards it)."""
        return f"{self._prefix}:prompt:{channel_id}:{user_id}"

    def prompts_pattern(self) -> str:
        """SCAN pattern of every ``prompt`` key of the pool."""
        return f"{self._prefix}:prompt:*"

    def component_wait(self, custom_id: str) -> str:
        """String with the wait's timeout: the prompt id waiting for a click on ``custom_id``."""
        return f"{self._components}:component:{custom_id}"

    # voice: Lavalink sessions held by gateways, players controlled by workers
    def lavalink_sessions(self) -> str:
        """Hash: Lavalink session id -> JSON {node, gateway, at} of sessions gateways hold now."""
        return f"{self._voice}:lavalink:sessions"

    def lavalink_orphans(self) -> str:
        """Hash: Lavalink session id -> JSON {node, at} of sessions a stopped gateway left to be
        resumed (their players keep playing for the resume timeout); HDEL claims one."""
        return f"{self._voice}:lavalink:orphans"

    def voice_player(self, guild_id: int) -> str:
        """Hash: a guild's Lavalink player (node, session, voice, track, position ...), see
        ``shared.voice.PlayerRecord``."""
        return f"{self._voice}:voice:{guild_id}"

    def voice_players_of(self, session_id: str) -> str:
        """Set: guild ids whose player lives in a Lavalink session (to recreate them elsewhere)."""
        return f"{self._voice}:voice-session:{session_id}"

    def music_queue(self, guild_id: int) -> str:
        """List: the music plugin's queue of a guild (Lavalink track JSON, in order)."""
        return f"{self._prefix}:music:{{{guild_id}}}:queue"

    def music_state(self, guild_id: int) -> str:
        """Hash: the music plugin's now-playing track, loop mode, text channel of a guild."""
        return f"{self._prefix}:music:{{{guild_id}}}:state"

    # services and schedules (run once across the pool's workers)
    def service_leader(self, service: str) -> str:
        """String with the service's lease TTL: the process id leading the service."""
        return f"{self._prefix}:service:{service}:leader"

    def schedule(self, name: str) -> str:
        """Hash: done (last period run), running, holder, deadline of a schedule's runs."""
        return f"{self._prefix}:schedule:{name}"

    # what operators see (``shardline status``)
    def gateway_status(self, gateway_id: str) -> str:
        """String with ``HEALTH_TTL``: JSON of a gateway's shards (state, latency, counts)."""
        return f"{self._pooled}:gateway-status:{gateway_id}"

    def gateway_index(self) -> str:
        """Sorted set: ids of the gateways writing a status, scored by their last write (read
        instead of scanning a keyspace that holds the whole cache)."""
        return f"{self._pooled}:gateway-index"

    def workers(self) -> str:
        """Sorted set: worker replica ids scored by their last heartbeat."""
        return f"{self._pooled}:workers"

    def worker_status(self, worker_id: str) -> str:
        """String with ``HEALTH_TTL``: JSON of a worker replica's counters."""
        return f"{self._pooled}:worker-status:{worker_id}"

    def restart_requests(self) -> str:
        """Hash: shard id -> the operator's signed request (``shared.admin``); the gateway
        holding the shard removes the field, checks the signature, and restarts it (RESUME)."""
        return f"{self._pooled}:restart-shards"

    def drain_requests(self) -> str:
        """Hash: gateway id -> the operator's signed drain (``shared.admin``); removing the
        field undrains."""
        return f"{self._pooled}:drain-requests"

    def draining(self) -> str:
        """Set: gateway ids draining now (they hand every shard over, resumes only); each
        gateway adds and removes only itself, after checking its drain request's signature."""
        return f"{self._pooled}:draining"

    # cache (written by the gateway, read by workers); see shared/cache/
    def guild(self, guild_id: int) -> str:
        """String: the guild's own fields as JSON (no members, channels, roles...)."""
        return f"{self._prefix}:g:{{{guild_id}}}"

    def guild_channels(self, guild_id: int) -> str:
        """Hash: channel (and thread) id -> JSON."""
        return f"{self._prefix}:g:{{{guild_id}}}:c"

    def guild_roles(self, guild_id: int) -> str:
        """Hash: role id -> JSON."""
        return f"{self._prefix}:g:{{{guild_id}}}:r"

    def guild_permissions(self, guild_id: int) -> str:
        """Hash: ``owner`` -> 8-byte owner id, 8-byte role id -> permissions; what the
        permission lookup reads in one round trip."""
        return f"{self._prefix}:g:{{{guild_id}}}:rp"

    def guild_emojis(self, guild_id: int) -> str:
        return f"{self._prefix}:g:{{{guild_id}}}:e"

    def guild_member_ids(self, guild_id: int) -> str:
        """Set: user ids of the guild's cached members (an intset while small)."""
        return f"{self._prefix}:g:{{{guild_id}}}:mi"

    def guild_voice_states(self, guild_id: int) -> str:
        """Hash: user id -> JSON voice state."""
        return f"{self._prefix}:g:{{{guild_id}}}:v"

    def guild_presences(self, guild_id: int) -> str:
        return f"{self._prefix}:g:{{{guild_id}}}:p"

    def member_bucket(self, guild_id: int, user_id: int) -> str:
        """Hash: 16-byte (guild, user) -> packed member; members of every guild spread over
        ``2**bucket_bits`` small hashes that Redis keeps listpack-encoded."""
        return f"{self._prefix}:mb:{_bucket(guild_id * 31 ^ user_id, self.bucket_bits)}"

    def user_bucket(self, user_id: int) -> str:
        """Hash: 8-byte user id -> packed user. Users are stored once, whatever their guilds."""
        return f"{self._prefix}:ub:{_bucket(user_id, self.bucket_bits)}"

    def channel_guild_bucket(self, channel_id: int) -> str:
        """Hash: 8-byte channel id -> 8-byte guild id, to find a channel by its id alone."""
        return f"{self._prefix}:cb:{_bucket(channel_id, self._channel_bits)}"

    def cache_layout(self) -> str:
        """String: the ``bucket_bits`` the pool's member, user and channel buckets were written
        with (``shared.cache.layout``), so a process configured otherwise refuses to start
        instead of missing every entry."""
        return f"{self._prefix}:cache-layout"

    def shard_guilds(self, shard_id: int, shard_count: int) -> str:
        """Set: ids of the guilds a shard of a layout delivered (dropped when the shard
        re-identifies). Per layout: after a re-shard, shard 0 of the new layout owns only part
        of what shard 0 of the old one did, and must not drop the rest."""
        return f"{self._prefix}:shard:{{{shard_count}:{shard_id}}}:guilds"

    def guilds(self) -> str:
        """Set: every cached guild of the pool."""
        return f"{self._prefix}:guilds"

    def unavailable_guilds(self) -> str:
        """Set: guilds Discord reported unavailable (outage), data kept."""
        return f"{self._prefix}:unavailable"

    def message(self, channel_id: int, message_id: int) -> str:
        """String with ``MESSAGE_CACHE_TTL``: a message's JSON (optional resource)."""
        return f"{self._prefix}:msg:{channel_id}:{message_id}"

    def read_through(self, kind: str, *ids: int) -> str:
        """String with ``REST_CACHE_TTL``: what a worker fetched over REST."""
        return f"{self._prefix}:rt:{kind}:" + ":".join(str(i) for i in ids)


def _bucket(value: int, bits: int) -> int:
    # Fibonacci hashing: snowflakes' low bits (increment, worker) are far from uniform.
    return ((value * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> (64 - bits)
