"""The cache reader: hikari models and the lookups bots need, from what gateways wrote.

Models are built by hikari's own entity factory from Discord-shaped JSON, so what a worker
gets from the cache is the same type it would get from hikari's REST client.
"""

from __future__ import annotations

import time
import typing

import hikari
import orjson

from shared import keys, redis_client
from shared.cache import codec, permissions, snapshot

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from hikari.api import entity_factory as entity_factory_api

Json = dict[str, typing.Any]


# One round trip for a permission check: the packed member, then (the role ids cut out of it
# as 8-byte strings, no number conversion) the owner and the permissions of @everyone and of
# the member's roles, and the channel's JSON for its overwrites. Without a cached member, the
# role ids the event carried (ARGV[4..]) stand in, and the owner is still answered.
_PERMISSION_INPUTS: typing.Final = f"""
{codec.lua_whole("member_of", "KEYS[1]")}
local packed = member_of(ARGV[1])
local fields = {{'owner', ARGV[2]}}
if packed then
  local count = string.byte(packed, {codec.ROLE_COUNT_OFFSET + 1})
  for i = 0, count - 1 do
    local start = {codec.ROLE_COUNT_OFFSET + 2} + 8 * i
    fields[#fields + 1] = string.sub(packed, start, start + 7)
  end
else
  for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
end
local values = redis.call('HMGET', KEYS[2], unpack(fields))
local channel = false
if ARGV[3] ~= '' then channel = redis.call('HGET', KEYS[3], ARGV[3]) end
return {{packed, values, channel}}
"""

# The same without the member (KEYS: the guild's role permissions, its channels; ARGV: owner
# field, channel id or '', the role ids): on a Redis Cluster the member bucket is in another
# slot than the guild's keys, so the member is read first and its roles passed in.
_GUILD_PERMISSION_INPUTS: typing.Final = """
local fields = {'owner', ARGV[1]}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local values = redis.call('HMGET', KEYS[1], unpack(fields))
local channel = false
if ARGV[2] ~= '' then channel = redis.call('HGET', KEYS[2], ARGV[2]) end
return {values, channel}
"""


#: Announcement, public and private threads (Channel > Channel Types 10, 11, 12).
_THREAD_TYPES: typing.Final = frozenset({10, 11, 12})


def _overwrites(channel: Json) -> dict[int, permissions.Overwrite]:
    return {
        int(o["id"]): permissions.Overwrite(int(o["id"]), int(o["allow"]), int(o["deny"]))
        for o in channel.get("permission_overwrites") or ()
    }


class CacheReader:
    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        entity_factory: entity_factory_api.EntityFactory,
    ) -> None:
        self._redis = redis
        self.keys = redis_keys
        self._factory = entity_factory
        self._permission_inputs = redis.register_script(_PERMISSION_INPUTS)
        self._guild_permission_inputs = redis.register_script(_GUILD_PERMISSION_INPUTS)
        self._cluster = redis_client.is_cluster(redis)
        self._snapshot = snapshot.register(redis)

    @property
    def settings(self) -> hikari.impl.CacheSettings:
        """hikari's ``Cache.settings``: none of its synchronous components, since this cache is
        asynchronous. A framework handed it as ``bot.cache`` (tanjun checks its converters
        against these components when they are added) then relies on none of them."""
        return hikari.impl.CacheSettings(components=hikari.api.CacheComponents.NONE)

    # --- raw JSON ---------------------------------------------------------------------------

    async def guild_json(self, guild_id: int) -> Json | None:
        raw = await self._redis.get(self.keys.guild(guild_id))
        return None if raw is None else typing.cast("Json", orjson.loads(raw))

    async def channel_guild(self, channel_id: int) -> int | None:
        raw = await self._redis.hget(
            self.keys.channel_guild_bucket(channel_id), codec.id_bytes(channel_id)
        )
        return None if raw is None else int.from_bytes(typing.cast("bytes", raw), "big")

    async def channel_json(self, channel_id: int, guild_id: int | None = None) -> Json | None:
        if guild_id is None:
            guild_id = await self.channel_guild(channel_id)
            if guild_id is None:
                return None
        raw = await self._redis.hget(self.keys.guild_channels(guild_id), str(channel_id))
        if raw is None:
            return None
        channel: Json = orjson.loads(raw)
        channel.setdefault("guild_id", str(guild_id))
        return channel

    async def _packed(
        self, bucket: str, field: bytes, found: typing.Sequence[bytes | None]
    ) -> bytes | None:
        """A packed member or user from its first pieces as read (``codec.pieces``); a value
        of more pieces (rare: a member with 28 roles) takes one more read."""
        value, complete = codec.joined(found)
        if not complete:
            rest = typing.cast(
                "list[bytes | None]",  # decode_responses is off: replies are bytes
                await self._redis.hmget(
                    bucket, codec.piece_fields(field, codec.MAX_PIECES - len(found), len(found))
                ),
            )
            value, _ = codec.joined([*found, *rest])
        return value

    async def _packed_one(self, bucket: str, field: bytes) -> bytes | None:
        found = await self._redis.hmget(bucket, codec.piece_fields(field))
        return await self._packed(bucket, field, typing.cast("list[bytes | None]", found))

    async def user_json(self, user_id: int) -> Json | None:
        raw = await self._packed_one(self.keys.user_bucket(user_id), codec.id_bytes(user_id))
        return None if raw is None else codec.decode_user(user_id, raw)

    async def member_json(self, guild_id: int, user_id: int) -> Json | None:
        member_bucket = self.keys.member_bucket(guild_id, user_id)
        member_field = codec.pair_bytes(guild_id, user_id)
        user_bucket, user_field = self.keys.user_bucket(user_id), codec.id_bytes(user_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(member_bucket, codec.piece_fields(member_field))
            pipe.hmget(user_bucket, codec.piece_fields(user_field))
            member_pieces, user_pieces = await pipe.execute()
        packed = await self._packed(member_bucket, member_field, member_pieces)
        user = await self._packed(user_bucket, user_field, user_pieces)
        if packed is None:
            return None
        member = codec.decode_member(packed)
        member["user"] = (
            codec.decode_user(user_id, user)
            if user is not None
            else {"id": str(user_id), "username": "", "discriminator": "0", "avatar": None}
        )
        return member

    async def snapshots(
        self, requests: typing.Sequence[snapshot.SnapshotRequest]
    ) -> list[snapshot.Snapshot]:
        """What each event names, for hikari's synchronous getters; one round trip for all."""
        return await snapshot.read(self._snapshot, self.keys, requests)

    # --- models -----------------------------------------------------------------------------

    async def get_guild(self, guild_id: int) -> hikari.RESTGuild | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.guild(guild_id))
            pipe.hvals(self.keys.guild_roles(guild_id))
            pipe.hvals(self.keys.guild_emojis(guild_id))
            raw, roles, emojis = await pipe.execute()
        if raw is None:
            return None
        payload: Json = orjson.loads(raw)
        payload["roles"] = [orjson.loads(r) for r in roles]
        payload["emojis"] = [orjson.loads(e) for e in emojis]
        # Fields only REST sends: Discord's defaults.
        payload.setdefault("stickers", [])
        payload.setdefault("max_members", 500_000)
        payload.setdefault("max_presences", None)
        if "member_count" in payload:
            payload.setdefault("approximate_member_count", payload["member_count"])
        return self._factory.deserialize_rest_guild(payload)

    async def get_channel(
        self, channel_id: int, guild_id: int | None = None
    ) -> hikari.PartialChannel | None:
        payload = await self.channel_json(channel_id, guild_id)
        if payload is None:
            return None
        return self._factory.deserialize_channel(payload)

    async def get_guild_channels(self, guild_id: int) -> list[hikari.PartialChannel]:
        raw = await self._redis.hvals(self.keys.guild_channels(guild_id))
        channels = []
        for item in raw:
            payload: Json = orjson.loads(item)
            payload.setdefault("guild_id", str(guild_id))
            channels.append(self._factory.deserialize_channel(payload))
        return channels

    async def get_roles(self, guild_id: int) -> list[hikari.Role]:
        raw = await self._redis.hvals(self.keys.guild_roles(guild_id))
        roles = [
            self._factory.deserialize_role(orjson.loads(r), guild_id=hikari.Snowflake(guild_id))
            for r in raw
        ]
        return sorted(roles, key=lambda role: (role.position, role.id))

    async def get_role(self, guild_id: int, role_id: int) -> hikari.Role | None:
        raw = await self._redis.hget(self.keys.guild_roles(guild_id), str(role_id))
        if raw is None:
            return None
        return self._factory.deserialize_role(
            orjson.loads(raw), guild_id=hikari.Snowflake(guild_id)
        )

    async def get_user(self, user_id: int) -> hikari.User | None:
        payload = await self.user_json(user_id)
        return None if payload is None else self._factory.deserialize_user(payload)

    async def get_member(self, guild_id: int, user_id: int) -> hikari.Member | None:
        payload = await self.member_json(guild_id, user_id)
        if payload is None:
            return None
        return self._factory.deserialize_member(payload, guild_id=hikari.Snowflake(guild_id))

    async def get_member_roles(self, guild_id: int, user_id: int) -> list[hikari.Role]:
        payload = await self.member_json(guild_id, user_id)
        if payload is None:
            return []
        wanted = [str(guild_id), *payload["roles"]]
        raw = await self._redis.hmget(self.keys.guild_roles(guild_id), wanted)
        return [
            self._factory.deserialize_role(orjson.loads(r), guild_id=hikari.Snowflake(guild_id))
            for r in raw
            if r is not None
        ]

    async def get_voice_state(self, guild_id: int, user_id: int) -> hikari.VoiceState | None:
        raw = await self._redis.hget(self.keys.guild_voice_states(guild_id), str(user_id))
        if raw is None:
            return None
        member = await self.member_json(guild_id, user_id)
        if member is None:
            return None
        payload: Json = orjson.loads(raw)
        payload["guild_id"] = str(guild_id)
        payload["member"] = member
        return self._factory.deserialize_voice_state(payload)

    async def voice_channel_members(self, guild_id: int) -> dict[int, int]:
        """Who is in which voice channel of a guild: user id -> channel id (one round trip)."""
        found = await self._redis.hgetall(self.keys.guild_voice_states(guild_id))
        members: dict[int, int] = {}
        for user_id, raw in found.items():
            channel = orjson.loads(raw).get("channel_id")
            if channel is not None:
                members[int(user_id)] = int(channel)
        return members

    # --- lookups ----------------------------------------------------------------------------

    async def _permission_inputs_apart(
        self, guild_id: int, user_id: int, channel_id: int | None, given: list[bytes]
    ) -> tuple[bytes | None, list[bytes | None], bytes | None]:
        """What ``_PERMISSION_INPUTS`` answers, in two round trips (one per slot)."""
        packed = await self._packed_one(
            self.keys.member_bucket(guild_id, user_id), codec.pair_bytes(guild_id, user_id)
        )
        if packed is not None:
            given = [codec.id_bytes(r) for r in codec.member_role_ids(packed)]
        values, channel = await self._guild_permission_inputs(
            keys=[self.keys.guild_permissions(guild_id), self.keys.guild_channels(guild_id)],
            args=[
                codec.id_bytes(guild_id),
                "" if channel_id is None else str(channel_id),
                *given,
            ],
        )
        return packed, values, channel

    async def member_permissions(
        self,
        guild_id: int,
        user_id: int,
        channel_id: int | None = None,
        *,
        role_ids: typing.Sequence[int] | None = None,
    ) -> hikari.Permissions | None:
        """Discord's documented computation, from one round trip; ``None`` when the guild's
        roles are not cached, or the member is neither cached nor its ``role_ids`` given (the
        roles an event carried). The owner has every permission, member cached or not."""
        given = [] if role_ids is None else [codec.id_bytes(r) for r in role_ids]
        if self._cluster:
            packed, values, channel_raw = await self._permission_inputs_apart(
                guild_id, user_id, channel_id, given
            )
        else:
            packed, values, channel_raw = await self._permission_inputs(
                keys=[
                    self.keys.member_bucket(guild_id, user_id),
                    self.keys.guild_permissions(guild_id),
                    self.keys.guild_channels(guild_id),
                ],
                args=[
                    codec.pair_bytes(guild_id, user_id),
                    codec.id_bytes(guild_id),
                    "" if channel_id is None else str(channel_id),
                    *given,
                ],
            )
        if values[0] is None:
            return None
        owner_id = int.from_bytes(values[0], "big")
        if user_id == owner_id:
            return hikari.Permissions(permissions.ALL)
        if packed is None and role_ids is None:
            return None
        role_ids = codec.member_role_ids(packed) if packed is not None else list(role_ids or ())
        role_permissions = {
            role_id: int(value)
            for role_id, value in zip([guild_id, *role_ids], values[1:], strict=True)
            if value is not None
        }
        base = permissions.base_permissions(
            guild_id=guild_id,
            owner_id=owner_id,
            user_id=user_id,
            member_role_ids=role_ids,
            role_permissions=role_permissions,
        )
        if channel_id is None or not channel_raw:
            return hikari.Permissions(base)
        channel = orjson.loads(channel_raw)
        if channel.get("type") in _THREAD_TYPES:
            # Permissions > Permission Overwrites: a thread has no overwrites of its own, it
            # inherits its parent channel's (Channel Object ``parent_id``). One more read, for
            # threads only; an uncached parent counts as no overwrites, like an uncached channel.
            parent_id = channel.get("parent_id")
            parent_raw = (
                await self._redis.hget(self.keys.guild_channels(guild_id), str(parent_id))
                if parent_id is not None
                else None
            )
            if not parent_raw:
                return hikari.Permissions(base)
            channel = orjson.loads(parent_raw)
        return hikari.Permissions(
            permissions.channel_permissions(
                base,
                guild_id=guild_id,
                user_id=user_id,
                member_role_ids=role_ids,
                overwrites=_overwrites(channel),
                timed_out=packed is not None and codec.member_timed_out(packed, time.time()),
            )
        )

    async def guild_ids(self) -> set[int]:
        return {int(g) for g in await self._redis.smembers(self.keys.guilds())}

    async def unavailable_guild_ids(self) -> set[int]:
        return {int(g) for g in await self._redis.smembers(self.keys.unavailable_guilds())}

    async def member_ids(self, guild_id: int) -> set[int]:
        return {int(u) for u in await self._redis.smembers(self.keys.guild_member_ids(guild_id))}

    async def counts(self, guild_id: int | None = None) -> dict[str, int]:
        """Guilds of the pool, or one guild's members, channels and roles."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if guild_id is None:
                pipe.scard(self.keys.guilds())
                pipe.scard(self.keys.unavailable_guilds())
                guilds, unavailable = await pipe.execute()
                return {"guilds": guilds, "unavailable": unavailable}
            pipe.scard(self.keys.guild_member_ids(guild_id))
            pipe.hlen(self.keys.guild_channels(guild_id))
            pipe.hlen(self.keys.guild_roles(guild_id))
            members, channels, roles = await pipe.execute()
        return {"members": members, "channels": channels, "roles": roles}

    # --- read-through -----------------------------------------------------------------------

    async def remember(self, kind: str, ids: tuple[int, ...], payload: Json) -> None:
        """Keep what a worker fetched over REST for ``REST_CACHE_TTL``, apart from (and never
        over) what gateways wrote."""
        await self._redis.set(
            self.keys.read_through(kind, *ids), orjson.dumps(payload), ex=keys.REST_CACHE_TTL
        )

    async def recall(self, kind: str, ids: tuple[int, ...]) -> Json | None:
        raw = await self._redis.get(self.keys.read_through(kind, *ids))
        return None if raw is None else typing.cast("Json", orjson.loads(raw))

    async def member_json_or_fetched(
        self,
        guild_id: int,
        user_id: int,
        fetch: typing.Callable[[], typing.Awaitable[Json | None]],
    ) -> Json | None:
        """Gateway data first, then what was fetched before, then ``fetch`` (and remember it)."""
        cached = await self.member_json(guild_id, user_id)
        if cached is not None:
            return cached
        remembered = await self.recall("member", (guild_id, user_id))
        if remembered is not None:
            return remembered
        fetched = await fetch()
        if fetched is not None:
            await self.remember("member", (guild_id, user_id), fetched)
        return fetched
