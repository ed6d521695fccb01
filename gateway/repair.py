"""Cache writes lost to a Redis outage, repaired once Redis answers again.

The publisher skips a cache write rather than hold events behind a hung Redis; what the write
would have changed (a role revoked, a member gone) is then missing from the cache, and a
permission check would honour it. :class:`CacheRepair` keeps the guilds those writes touched
(in memory, bounded by ``limit``), and once Redis's breaker is closed re-fetches each guild over
REST (:func:`gateway.discord_api.fetch_guild_state`) and writes it whole, as a GUILD_CREATE
would: what REST cannot tell (voice states, presences) is kept from the cache.

How stale a cached guild can be: docs/operations.md, "Cache repair".
"""

from __future__ import annotations

import collections
import logging
import typing

import orjson

from gateway import discord_api
from shared import redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import breaker, secret
    from shared.cache import writer

_LOGGER = logging.getLogger("shardline.gateway.repair")
#: Guilds waiting for repair at most; past it, the newest wait for their next GUILD_CREATE.
LIMIT: typing.Final = 10_000
#: How often the loop looks (seconds); a repair starts at most this long after Redis is back.
INTERVAL: typing.Final = 1.0
#: Guilds re-fetched per round (three requests or more each), so that a large backlog stays
#: well under Discord's global 50 requests per second, shared with the workers and with the
#: pool's other gateways, which all repair at once after a Redis outage: at 10 a round, two
#: gateways sent 60 requests in a second and were answered 429 (soak, seed 1).
PER_ROUND: typing.Final = 3
#: Worth another try later: Redis or Discord away.
_RETRYABLE: typing.Final[tuple[type[BaseException], ...]] = (
    *redis_client.REDIS_ERRORS,
    discord_api.DiscordApiError,
)

Fetch = typing.Callable[[int], typing.Awaitable[dict[str, typing.Any] | None]]


def guilds_of(name: str, data: typing.Any) -> list[int]:
    """The guilds a dispatch's cache write touches."""
    if not isinstance(data, dict):
        return []
    try:
        if name == "READY":
            return [int(g["id"]) for g in data.get("guilds", ())]
        if name.startswith("GUILD_") and "guild_id" not in data and "id" in data:
            return [int(data["id"])]  # GUILD_CREATE / UPDATE / DELETE
        if data.get("guild_id"):
            return [int(data["guild_id"])]
    except (KeyError, TypeError, ValueError):
        return []
    return []


class CacheRepair:
    """The guilds whose cache writes were lost, and the loop that rewrites them."""

    def __init__(
        self,
        cache_writer: writer.CacheWriter,
        redis: aioredis.Redis,
        fetch: Fetch,
        *,
        breaker: breaker.CircuitBreaker | None = None,
        limit: int = LIMIT,
    ) -> None:
        self._writer = cache_writer
        self._redis = redis
        self._fetch = fetch
        self._breaker = breaker
        self._limit = limit
        #: guild id → the shard it was seen on, oldest first.
        self.pending: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.repaired = 0
        self.dropped = 0
        self.failures = 0

    @classmethod
    def over_rest(
        cls,
        cache_writer: writer.CacheWriter,
        redis: aioredis.Redis,
        api_url: str,
        token: secret.Secret,
        *,
        breaker: breaker.CircuitBreaker | None = None,
    ) -> CacheRepair:
        async def fetch(guild_id: int) -> dict[str, typing.Any] | None:
            return await discord_api.fetch_guild_state(api_url, token, guild_id)

        return cls(cache_writer, redis, fetch, breaker=breaker)

    def mark(self, events: typing.Iterable[tuple[int, str, typing.Any]]) -> None:
        """Remember the guilds of cache writes that were skipped or failed."""
        for shard_id, name, data in events:
            for guild_id in guilds_of(name, data):
                if guild_id in self.pending:
                    continue
                if len(self.pending) >= self._limit:
                    if not self.dropped:
                        _LOGGER.warning(
                            "cache repair backlog full: further guilds wait for their next "
                            "GUILD_CREATE",
                            extra={"limit": self._limit},
                        )
                    self.dropped += 1
                    continue
                self.pending[guild_id] = shard_id

    async def run_once(self) -> int:
        """Repair up to :data:`PER_ROUND` guilds while Redis answers; how many were."""
        done = 0
        while self.pending and done < PER_ROUND:
            if self._breaker is not None and not self._breaker.closed:
                break  # Redis still away (a probe is due): the next round tries
            guild_id, shard_id = next(iter(self.pending.items()))
            try:
                await self._repair(guild_id, shard_id)
            except _RETRYABLE as exc:
                self.failures += 1
                self.pending.move_to_end(guild_id)  # the others get their turn
                _LOGGER.warning(
                    "cache repair failed; retrying",
                    extra={"guild": guild_id, "error": str(exc)},
                )
                break
            del self.pending[guild_id]
            self.repaired += 1
            done += 1
        if done and not self.pending:
            _LOGGER.info("cache repaired", extra={"guilds": self.repaired})
        return done

    async def _repair(self, guild_id: int, shard_id: int) -> None:
        state = await self._fetch(guild_id)
        if state is None:
            # The bot left while its GUILD_DELETE was not written.
            await self._writer.write(self._redis, [(shard_id, "GUILD_DELETE", {"id": guild_id})])
            return
        if "members" not in state:
            # Members not listable: update what REST told without dropping them.
            channels = state.pop("channels", [])
            events = [(shard_id, "GUILD_UPDATE", state)]
            events += [(shard_id, "CHANNEL_UPDATE", {**c, "guild_id": guild_id}) for c in channels]
            await self._writer.write(self._redis, events)
            return
        await self._keep_gateway_only(guild_id, state)
        await self._writer.write(self._redis, [(shard_id, "GUILD_CREATE", state)])

    async def _keep_gateway_only(self, guild_id: int, state: dict[str, typing.Any]) -> None:
        """Voice states and presences come only from the gateway: carry the cached ones over
        the rewrite."""
        keys = self._writer.keys
        voice = await self._redis.hgetall(keys.guild_voice_states(guild_id))
        state["voice_states"] = [orjson.loads(raw) for raw in voice.values()]
        presences = await self._redis.hgetall(keys.guild_presences(guild_id))
        state["presences"] = [
            {**orjson.loads(raw), "user": {"id": redis_client.text(user_id)}}
            for user_id, raw in presences.items()
        ]
