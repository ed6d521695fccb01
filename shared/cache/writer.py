"""The cache writer: every cache-relevant dispatch becomes a few pipelined Redis commands.

The gateway runs :meth:`CacheWriter.write` on the dispatches of one flush, in shard order,
before publishing them, so a worker handling an event finds the cache already reflecting it.
Member lists (GUILD_CREATE of a large guild, GUILD_MEMBERS_CHUNK) are sent in slices of
``CHUNK`` members, each its own round trip, so that the event loop, and with it the shards'
heartbeats, keep running while 100,000 members are written.
"""

from __future__ import annotations

import logging
import typing

import orjson

from shared import keys
from shared.cache import codec
from shared.cache.resources import CacheResource

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.client import Pipeline

Json = dict[str, typing.Any]
_LOGGER = logging.getLogger("shardline.cache.writer")
_GUILD_PARTS: typing.Final = frozenset(
    {
        "members", "channels", "threads", "roles", "emojis", "voice_states", "presences",
        "stickers", "stage_instances", "guild_scheduled_events", "soundboard_sounds",
    }
)  # fmt: skip
CHUNK: typing.Final[int] = 1000
#: Members an event carried and this writer stored, remembered so that a chatty member's next
#: message writes nothing when unchanged (cleared whole when full).
CARRIED_MEMO: typing.Final[int] = 100_000
#: Announcement, public and private threads.
_THREAD_TYPES: typing.Final = frozenset({10, 11, 12})


#: Events that write nothing unless one of their resources is cached.
_ONLY_FOR: typing.Final[dict[str, CacheResource]] = {
    "MESSAGE_CREATE": CacheResource.MESSAGES | CacheResource.MEMBERS | CacheResource.USERS,
    "MESSAGE_UPDATE": CacheResource.MESSAGES,
    "MESSAGE_DELETE": CacheResource.MESSAGES,
    "PRESENCE_UPDATE": CacheResource.PRESENCES,
    "INTERACTION_CREATE": CacheResource.MEMBERS | CacheResource.USERS,
    "MESSAGE_REACTION_ADD": CacheResource.MEMBERS | CacheResource.USERS,
    "TYPING_START": CacheResource.MEMBERS | CacheResource.USERS,
}


class CacheWriter:
    """Turns dispatches into cache writes for one pool."""

    def __init__(
        self, redis_keys: keys.RedisKeys, resources: CacheResource, *, shard_count: int
    ) -> None:
        self.keys = redis_keys
        self.resources = resources
        #: The layout of the shards whose dispatches this writer gets (one per gateway).
        self.shard_count = shard_count
        self.malformed = 0
        #: (guild, user) -> what was last stored from an event that carried the member.
        self._carried: dict[tuple[int, int], bytes] = {}
        self._handlers: dict[str, typing.Callable[..., typing.Awaitable[None]]] = {
            "READY": self._ready,
            "GUILD_CREATE": self._guild_create,
            "GUILD_UPDATE": self._guild_update,
            "GUILD_DELETE": self._guild_delete,
            "CHANNEL_CREATE": self._channel_upsert,
            "CHANNEL_UPDATE": self._channel_upsert,
            "CHANNEL_DELETE": self._channel_delete,
            "THREAD_CREATE": self._channel_upsert,
            "THREAD_UPDATE": self._channel_upsert,
            "THREAD_DELETE": self._channel_delete,
            "THREAD_LIST_SYNC": self._thread_list_sync,
            "GUILD_ROLE_CREATE": self._role_upsert,
            "GUILD_ROLE_UPDATE": self._role_upsert,
            "GUILD_ROLE_DELETE": self._role_delete,
            "GUILD_EMOJIS_UPDATE": self._emojis_update,
            "GUILD_MEMBER_ADD": self._member_upsert,
            "GUILD_MEMBER_UPDATE": self._member_upsert,
            "GUILD_MEMBER_REMOVE": self._member_remove,
            "GUILD_MEMBERS_CHUNK": self._members_chunk,
            "VOICE_STATE_UPDATE": self._voice_state,
            "PRESENCE_UPDATE": self._presence,
            "USER_UPDATE": self._user_update,
            "MESSAGE_CREATE": self._message_create,
            "MESSAGE_UPDATE": self._message_update,
            "MESSAGE_DELETE": self._message_delete,
            # Members the event carries (no GUILD_PRESENCES: GUILD_CREATE has almost none, and
            # members are never chunked), so the next permission check is local.
            "INTERACTION_CREATE": self._carried_member,
            "MESSAGE_REACTION_ADD": self._carried_member,
            "TYPING_START": self._carried_member,
        }

        # Events whose only effect is an optional resource that is off write nothing: the
        # gateway must not hold their publication behind a cache write (a flush chained on
        # Redis for every message otherwise).
        for event, resource in _ONLY_FOR.items():
            if not self._on(resource):
                del self._handlers[event]

    def handles(self, event: str) -> bool:
        return event in self._handlers

    async def write(
        self, redis: aioredis.Redis, events: typing.Iterable[tuple[int, str, typing.Any]]
    ) -> None:
        """Apply ``(shard_id, event, d)`` in order; one round trip unless members are many."""
        pipe = redis.pipeline(transaction=False)
        for shard_id, event, d in events:
            if not isinstance(d, dict):
                continue
            try:
                await self._handlers[event](redis, pipe, shard_id, d)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # A payload not shaped as documented: skip its cache write, keep the rest.
                self.malformed += 1
                _LOGGER.warning(
                    "malformed dispatch not cached",
                    extra={"event": event, "shard": shard_id, "error": repr(exc)},
                )
        if len(pipe):
            await pipe.execute()

    # --- helpers ----------------------------------------------------------------------------

    def _on(self, resource: CacheResource) -> bool:
        return bool(self.resources & resource)

    def _put_user(self, pipe: Pipeline, user: Json) -> None:
        if self._on(CacheResource.USERS) and "username" in user:
            user_id = int(user["id"])
            _put_packed(
                pipe,
                self.keys.user_bucket(user_id),
                codec.id_bytes(user_id),
                codec.encode_user(user),
            )

    def _put_carried(self, pipe: Pipeline, guild_id: int, member: Json) -> None:
        """Store a member an event carried, unless this writer stored exactly it already."""
        user = member.get("user")
        if not isinstance(user, dict):
            return
        memo_key = (guild_id, int(user["id"]))
        seen = codec.encode_member(member) + codec.encode_user(user)
        if self._carried.get(memo_key) == seen:
            return
        self._put_member(pipe, guild_id, member)
        if len(self._carried) >= CARRIED_MEMO:
            self._carried.clear()
        self._carried[memo_key] = seen

    def _put_member(
        self, pipe: Pipeline, guild_id: int, member: Json, *, index: bool = True
    ) -> int | None:
        user = member.get("user")
        if not isinstance(user, dict):
            return None
        user_id = int(user["id"])
        self._carried.pop((guild_id, user_id), None)  # written otherwise: no longer known
        if self._on(CacheResource.MEMBERS):
            _put_packed(
                pipe,
                self.keys.member_bucket(guild_id, user_id),
                codec.pair_bytes(guild_id, user_id),
                codec.encode_member(member),
            )
            if index:
                pipe.sadd(self.keys.guild_member_ids(guild_id), user_id)
        self._put_user(pipe, user)
        return user_id

    async def _put_members(
        self, pipe: Pipeline, guild_id: int, members: typing.Sequence[Json]
    ) -> None:
        for start in range(0, len(members), CHUNK):
            ids = [
                self._put_member(pipe, guild_id, m, index=False)
                for m in members[start : start + CHUNK]
            ]
            known = [i for i in ids if i is not None]
            if known and self._on(CacheResource.MEMBERS):
                pipe.sadd(self.keys.guild_member_ids(guild_id), *known)
            if start + CHUNK < len(members):
                # Send this slice; awaiting lets the loop run heartbeats in between.
                await pipe.execute()

    def _put_channel(self, pipe: Pipeline, guild_id: int, channel: Json) -> None:
        channel_id = int(channel["id"])
        pipe.hset(self.keys.guild_channels(guild_id), str(channel_id), orjson.dumps(channel))
        pipe.hset(
            self.keys.channel_guild_bucket(channel_id),
            codec.id_bytes(channel_id),
            codec.id_bytes(guild_id),
        )

    def _drop_channel(self, pipe: Pipeline, guild_id: int, channel_id: int) -> None:
        pipe.hdel(self.keys.guild_channels(guild_id), str(channel_id))
        pipe.hdel(self.keys.channel_guild_bucket(channel_id), codec.id_bytes(channel_id))

    async def _drop_guild(self, redis: aioredis.Redis, pipe: Pipeline, guild_id: int) -> None:
        """Remove everything cached about a guild (users stay: they are shared)."""
        self._carried.clear()
        member_ids = await redis.smembers(self.keys.guild_member_ids(guild_id))
        for raw in member_ids:
            user_id = int(raw)
            pipe.hdel(
                self.keys.member_bucket(guild_id, user_id),
                *codec.piece_fields(codec.pair_bytes(guild_id, user_id), codec.MAX_PIECES),
            )
        channel_ids = await redis.hkeys(self.keys.guild_channels(guild_id))
        for raw in channel_ids:
            channel_id = int(raw)
            pipe.hdel(self.keys.channel_guild_bucket(channel_id), codec.id_bytes(channel_id))
        pipe.delete(
            self.keys.guild(guild_id),
            self.keys.guild_channels(guild_id),
            self.keys.guild_roles(guild_id),
            self.keys.guild_permissions(guild_id),
            self.keys.guild_emojis(guild_id),
            self.keys.guild_member_ids(guild_id),
            self.keys.guild_voice_states(guild_id),
            self.keys.guild_presences(guild_id),
        )
        pipe.srem(self.keys.guilds(), guild_id)
        pipe.srem(self.keys.unavailable_guilds(), guild_id)

    # --- handlers ---------------------------------------------------------------------------

    async def _ready(self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json) -> None:
        # A new session: guilds this shard had before but no longer lists are gone (kicked
        # while we were away, or moved to another shard by re-sharding).
        listed = {int(g["id"]) for g in d.get("guilds", ())}
        own = self.keys.shard_guilds(shard_id, self.shard_count)
        previous = {int(g) for g in await redis.smembers(own)}
        for guild_id in previous - listed:
            await self._drop_guild(redis, pipe, guild_id)
        pipe.delete(own)
        if listed:
            pipe.sadd(own, *listed)
            pipe.sadd(self.keys.guilds(), *listed)
            pipe.sadd(self.keys.unavailable_guilds(), *listed)
        self._put_user(pipe, d.get("user") or {})

    async def _guild_create(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        guild_id = int(d["id"])
        if d.get("unavailable"):
            pipe.sadd(self.keys.unavailable_guilds(), guild_id)
            return
        # A GUILD_CREATE is the full state: replace what was there.
        if await redis.exists(self.keys.guild(guild_id)):
            await self._drop_guild(redis, pipe, guild_id)
        pipe.sadd(self.keys.shard_guilds(shard_id, self.shard_count), guild_id)
        pipe.sadd(self.keys.guilds(), guild_id)
        pipe.srem(self.keys.unavailable_guilds(), guild_id)
        self._write_guild(pipe, guild_id, d)
        if self._on(CacheResource.CHANNELS):
            for channel in d.get("channels", ()):
                self._put_channel(pipe, guild_id, channel)
        if self._on(CacheResource.THREADS):
            for thread in d.get("threads", ()):
                self._put_channel(pipe, guild_id, thread)
        if self._on(CacheResource.VOICE_STATES):
            for state in d.get("voice_states", ()):
                self._put_voice_state(pipe, guild_id, state)
        if self._on(CacheResource.PRESENCES):
            for presence in d.get("presences", ()):
                self._put_presence(pipe, guild_id, presence)
        await self._put_members(pipe, guild_id, d.get("members", ()))

    def _write_guild(self, pipe: Pipeline, guild_id: int, d: Json, *, own: bool = True) -> None:
        if own and self._on(CacheResource.GUILDS):
            fields = {k: v for k, v in d.items() if k not in _GUILD_PARTS}
            pipe.set(self.keys.guild(guild_id), orjson.dumps(fields))
        if self._on(CacheResource.ROLES) and "roles" in d:
            # Replaced whole: roles gone from the list must go from both hashes.
            pipe.delete(self.keys.guild_roles(guild_id), self.keys.guild_permissions(guild_id))
            if d["roles"]:
                pipe.hset(
                    self.keys.guild_roles(guild_id),
                    mapping={r["id"]: orjson.dumps(r) for r in d["roles"]},
                )
                pipe.hset(
                    self.keys.guild_permissions(guild_id),
                    mapping={codec.id_bytes(int(r["id"])): r["permissions"] for r in d["roles"]},
                )
        if self._on(CacheResource.ROLES) and "owner_id" in d:
            pipe.hset(
                self.keys.guild_permissions(guild_id), "owner", codec.id_bytes(int(d["owner_id"]))
            )
        if self._on(CacheResource.EMOJIS) and "emojis" in d:
            self._replace_emojis(pipe, guild_id, d["emojis"])

    async def _guild_update(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del shard_id
        guild_id = int(d["id"])
        if self._on(CacheResource.GUILDS):
            # GUILD_UPDATE lacks the GUILD_CREATE-only fields (member_count, joined_at...):
            # merge over what is stored, after what this flush queued so far has landed.
            await pipe.execute()
            raw = await redis.get(self.keys.guild(guild_id))
            merged = orjson.loads(raw) if raw is not None else {}
            merged.update({k: v for k, v in d.items() if k not in _GUILD_PARTS})
            pipe.set(self.keys.guild(guild_id), orjson.dumps(merged))
        self._write_guild(pipe, guild_id, d, own=False)

    async def _guild_delete(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        guild_id = int(d["id"])
        if d.get("unavailable"):
            # An outage: Discord will send GUILD_CREATE again; keep the data, mark it.
            pipe.sadd(self.keys.unavailable_guilds(), guild_id)
            return
        await self._drop_guild(redis, pipe, guild_id)
        pipe.srem(self.keys.shard_guilds(shard_id, self.shard_count), guild_id)

    async def _channel_upsert(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        """CHANNEL_* and THREAD_* alike: threads are channels, switched by their own flag."""
        del redis, shard_id
        resource = (
            CacheResource.THREADS if d.get("type") in _THREAD_TYPES else CacheResource.CHANNELS
        )
        if self._on(resource) and d.get("guild_id"):
            self._put_channel(pipe, int(d["guild_id"]), d)

    async def _channel_delete(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        if d.get("guild_id"):
            self._drop_channel(pipe, int(d["guild_id"]), int(d["id"]))

    async def _thread_list_sync(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        if self._on(CacheResource.THREADS):
            for thread in d.get("threads", ()):
                self._put_channel(pipe, int(d["guild_id"]), thread)

    async def _role_upsert(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        if self._on(CacheResource.ROLES):
            role = d["role"]
            guild_id = int(d["guild_id"])
            pipe.hset(self.keys.guild_roles(guild_id), role["id"], orjson.dumps(role))
            pipe.hset(
                self.keys.guild_permissions(guild_id),
                codec.id_bytes(int(role["id"])),
                role["permissions"],
            )

    async def _role_delete(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        guild_id = int(d["guild_id"])
        pipe.hdel(self.keys.guild_roles(guild_id), str(d["role_id"]))
        pipe.hdel(self.keys.guild_permissions(guild_id), codec.id_bytes(int(d["role_id"])))

    def _replace_emojis(self, pipe: Pipeline, guild_id: int, emojis: list[Json]) -> None:
        pipe.delete(self.keys.guild_emojis(guild_id))
        if emojis:
            pipe.hset(
                self.keys.guild_emojis(guild_id),
                mapping={e["id"]: orjson.dumps(e) for e in emojis},
            )

    async def _emojis_update(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        if self._on(CacheResource.EMOJIS):
            self._replace_emojis(pipe, int(d["guild_id"]), d.get("emojis", []))

    async def _member_upsert(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        self._put_member(pipe, int(d["guild_id"]), d)

    async def _member_remove(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        guild_id = int(d["guild_id"])
        user_id = int(d["user"]["id"])
        self._carried.pop((guild_id, user_id), None)
        pipe.hdel(
            self.keys.member_bucket(guild_id, user_id),
            *codec.piece_fields(codec.pair_bytes(guild_id, user_id), codec.MAX_PIECES),
        )
        pipe.srem(self.keys.guild_member_ids(guild_id), user_id)
        pipe.hdel(self.keys.guild_voice_states(guild_id), str(user_id))
        pipe.hdel(self.keys.guild_presences(guild_id), str(user_id))

    async def _members_chunk(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        guild_id = int(d["guild_id"])
        await self._put_members(pipe, guild_id, d.get("members", ()))
        if self._on(CacheResource.PRESENCES):
            for presence in d.get("presences", ()) or ():
                self._put_presence(pipe, guild_id, presence)

    def _put_voice_state(self, pipe: Pipeline, guild_id: int, state: Json) -> None:
        user_id = str(state["user_id"])
        if state.get("channel_id") is None:
            pipe.hdel(self.keys.guild_voice_states(guild_id), user_id)
            return
        trimmed = {k: v for k, v in state.items() if k not in ("member", "guild_id")}
        pipe.hset(self.keys.guild_voice_states(guild_id), user_id, orjson.dumps(trimmed))

    async def _voice_state(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        if not d.get("guild_id"):
            return
        guild_id = int(d["guild_id"])
        if self._on(CacheResource.VOICE_STATES):
            self._put_voice_state(pipe, guild_id, d)
        if isinstance(d.get("member"), dict):
            self._put_member(pipe, guild_id, d["member"])

    def _put_presence(self, pipe: Pipeline, guild_id: int, presence: Json) -> None:
        user = presence.get("user") or {}
        trimmed = {
            "status": presence.get("status"),
            "activities": presence.get("activities", []),
            "client_status": presence.get("client_status", {}),
        }
        pipe.hset(self.keys.guild_presences(guild_id), str(user["id"]), orjson.dumps(trimmed))

    async def _presence(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        if self._on(CacheResource.PRESENCES) and d.get("guild_id"):
            self._put_presence(pipe, int(d["guild_id"]), d)
        self._put_user(pipe, d.get("user") or {})

    async def _user_update(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        self._put_user(pipe, d)

    async def _message(self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json) -> None:
        del redis, shard_id
        if self._on(CacheResource.MESSAGES):
            pipe.set(
                self.keys.message(int(d["channel_id"]), int(d["id"])),
                orjson.dumps(d),
                ex=keys.MESSAGE_CACHE_TTL,
            )

    async def _message_create(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        # Gateway Events "Message Create": in a guild, ``member`` is a partial member without
        # ``user``; the author is the message's ``author``.
        if self._on(CacheResource.MESSAGES):
            await self._message(redis, pipe, shard_id, d)
        member, author = d.get("member"), d.get("author")
        if d.get("guild_id") and isinstance(member, dict) and isinstance(author, dict):
            self._put_carried(pipe, int(d["guild_id"]), {**member, "user": author})
        elif isinstance(author, dict) and not d.get("webhook_id"):
            self._put_user(pipe, author)

    async def _carried_member(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        """INTERACTION_CREATE, MESSAGE_REACTION_ADD and TYPING_START carry the guild member
        (with ``user``) who acted (Interactions "Interaction Object", Gateway Events "Message
        Reaction Add" and "Typing Start")."""
        del redis, shard_id
        member = d.get("member")
        if d.get("guild_id") and isinstance(member, dict):
            self._put_carried(pipe, int(d["guild_id"]), member)

    async def _message_update(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        # A partial update: only replace a cached message when the update is complete.
        if "author" in d and "content" in d:
            await self._message(redis, pipe, shard_id, d)

    async def _message_delete(
        self, redis: aioredis.Redis, pipe: Pipeline, shard_id: int, d: Json
    ) -> None:
        del redis, shard_id
        if self._on(CacheResource.MESSAGES):
            pipe.delete(self.keys.message(int(d["channel_id"]), int(d["id"])))


def _put_packed(pipe: Pipeline, bucket: str, field: bytes, value: bytes) -> None:
    """A packed member or user, in pieces Redis keeps in its bucket's listpack."""
    stored = codec.pieces(field, value)
    pipe.hset(bucket, mapping=typing.cast("typing.Any", stored))
    if len(stored) > 1:
        # An earlier, longer value's pieces would stay behind (never read: they follow a
        # short piece). A short value skips this: ordinary members cost one command each.
        pipe.hdel(bucket, *codec.piece_fields(field, codec.MAX_PIECES - len(stored), len(stored)))
