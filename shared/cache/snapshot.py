"""What one event's cache helpers need, read for many events in one round trip.

hikari's cache API is synchronous (``event.get_guild()``, ``event.get_member()``), the cache is
in Redis. A worker therefore reads, before it runs an event's listeners, the entities the event
names: its guild, the users and members it names (with their roles), its channel (and a
thread's parent), the roles and emojis it names, and the cached messages it is about. One
script call answers that for every event of a broker message. What it does not read is not in
the snapshot, and hikari's getters answer ``None`` for it ("not cached").

The call carries one JSON argument holding the keys (built by :mod:`shared.keys`) and the
fields; per-key arguments cost redis-py an encoded argument each (see worker/dedupe.py), so the
keys are not declared in ``KEYS``. That holds on one server (and under Sentinel) only: on a
Redis Cluster a guild's keys, the member and user buckets and messages live in different slots,
and the same reads go out as pipelines (redis-py splits them by node), in two or three round
trips instead of one.
"""

from __future__ import annotations

import dataclasses
import typing

import orjson

from shared import redis_client
from shared.cache import codec

if typing.TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from shared import keys

#: A guild with at most this many roles is read with all of them (``guild.get_roles()``
#: answers); a larger one with the roles its event's members hold and the event names only.
ALL_ROLES_UP_TO: typing.Final = 32

# ARGV[1] = {"l": ALL_ROLES_UP_TO, "q": [request...]}; a request (see ``_request``) holds keys
# and fields; the answer is one list per request: guild JSON, unavailable (0/1), roles as
# id/JSON pairs, all roles (0/1), channels as id/JSON pairs (a thread's parent added), emojis,
# members, users, voice states, presences, messages (each in the order asked). A guild already
# answered in this call is answered by the number of that request instead of its JSON, and
# its roles, when all were read, by an all-roles flag of -1: the events of one busy guild do
# not carry its JSON and roles each.
#: The script's functions: ``read_snapshots(a)`` answers the decoded argument (the dedupe
#: claim of ``worker/dedupe.py`` calls it too, to read in the claim's round trip).
READ_FUNCTIONS: typing.Final = f"""
local function decimal(raw)
  -- An 8-byte big-endian id as decimal text (Lua's numbers stop at 2^53): long division.
  local b = {{string.byte(raw, 1, 8)}}
  local digits = {{}}
  repeat
    local rem, more = 0, false
    for i = 1, 8 do
      local cur = rem * 256 + b[i]
      b[i] = math.floor(cur / 10)
      rem = cur - b[i] * 10
      if b[i] > 0 then more = true end
    end
    digits[#digits + 1] = rem
  until not more
  return string.reverse(table.concat(digits))
end
local function unhex(text)
  return (string.gsub(text, '..', function(c) return string.char(tonumber(c, 16)) end))
end
local function pairs_of(hash, ids)
  local out = {{}}
  if #ids == 0 then return out end
  local values = redis.call('HMGET', hash, unpack(ids))
  for i, value in ipairs(values) do
    if value then out[#out + 1] = ids[i]; out[#out + 1] = value end
  end
  return out
end
{codec.lua_whole("whole")}
local function values_of(hash, ids)
  if #ids == 0 then return {{}} end
  return redis.call('HMGET', hash, unpack(ids))
end
local function read_snapshots(a)
local answers = {{}}
-- The first request of each guild in this call: later ones of the same guild get its number
-- instead of the guild's JSON (and of its roles, when all were read).
local first, all_roles = {{}}, {{}}
for n, q in ipairs(a.q) do
  local members, users, user_ids = {{}}, {{}}, {{}}
  for i, u in ipairs(q.u) do
    user_ids[i] = u[5]
    users[i] = whole(u[3], unhex(u[4]))
    members[i] = q.g ~= '' and whole(u[1], unhex(u[2])) or false
  end
  local guild, unavailable, roles, complete = false, 0, {{}}, 0
  local channels, emojis, voice, presences = {{}}, {{}}, {{}}, {{}}
  if q.g ~= '' then
    if first[q.g] then
      guild = first[q.g]
    else
      first[q.g] = n
      guild = redis.call('GET', q.k.g)
      unavailable = redis.call('SISMEMBER', q.k.un, q.g)
      all_roles[q.g] = redis.call('HLEN', q.k.r) <= a.l
      if all_roles[q.g] then roles, complete = redis.call('HGETALL', q.k.r), 1 end
    end
    if all_roles[q.g] then
      if guild == first[q.g] and n ~= first[q.g] then complete = -1 end
    else
      local wanted, seen = {{}}, {{}}
      local function want(id)
        if not seen[id] then seen[id] = true; wanted[#wanted + 1] = id end
      end
      want(q.g)
      for _, id in ipairs(q.r) do want(id) end
      for _, packed in ipairs(members) do
        if packed then
          local count = string.byte(packed, {codec.ROLE_COUNT_OFFSET + 1})
          for i = 0, count - 1 do
            local start = {codec.ROLE_COUNT_OFFSET + 2} + 8 * i
            want(decimal(string.sub(packed, start, start + 7)))
          end
        end
      end
      roles = pairs_of(q.k.r, wanted)
    end
    channels = pairs_of(q.k.c, q.c)
    local asked = {{}}
    for _, id in ipairs(q.c) do asked[id] = true end
    for i = 2, #channels, 2 do
      -- Decoded only when it may be a thread (stored by orjson: no spaces).
      local raw = channels[i]
      local channel = string.find(raw, '"type":1[012]') and cjson.decode(raw) or {{}}
      local parent = channel.parent_id
      if (channel.type == 10 or channel.type == 11 or channel.type == 12)
          and type(parent) == 'string' and not asked[parent] then
        asked[parent] = true
        local found = redis.call('HGET', q.k.c, parent)
        if found then channels[#channels + 1] = parent; channels[#channels + 1] = found end
      end
    end
    emojis = values_of(q.k.e, q.e)
    voice = values_of(q.k.v, user_ids)
    presences = values_of(q.k.p, user_ids)
  end
  local messages = {{}}
  for i, key in ipairs(q.m) do messages[i] = redis.call('GET', key) end
  answers[n] = {{guild, unavailable, roles, complete, channels, emojis, members, users, voice,
    presences, messages}}
end
return answers
end
"""
_READ: typing.Final = READ_FUNCTIONS + "return read_snapshots(cjson.decode(ARGV[1]))\n"


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """The entities one event names (ids as Discord sends them, snowflakes)."""

    guild_id: int | None = None
    user_ids: typing.Sequence[int] = ()
    channel_ids: typing.Sequence[int] = ()
    role_ids: typing.Sequence[int] = ()
    emoji_ids: typing.Sequence[int] = ()
    #: (channel id, message id) of cached messages the event is about.
    messages: typing.Sequence[tuple[int, int]] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What the cache held, when read, of what one event names: raw values, decoded on use.

    A key absent from a mapping means "not cached" (or not read)."""

    guild_id: int | None = None
    guild: bytes | None = None
    unavailable: bool = False
    roles: typing.Mapping[int, bytes] = dataclasses.field(default_factory=dict)
    #: Every role of the guild is in ``roles`` (a small guild), not only the ones asked.
    all_roles: bool = False
    channels: typing.Mapping[int, bytes] = dataclasses.field(default_factory=dict)
    emojis: typing.Mapping[int, bytes] = dataclasses.field(default_factory=dict)
    #: user id -> packed member (:mod:`shared.cache.codec`).
    members: typing.Mapping[int, bytes] = dataclasses.field(default_factory=dict)
    #: user id -> packed user.
    users: typing.Mapping[int, bytes] = dataclasses.field(default_factory=dict)
    voice_states: typing.Mapping[int, bytes] = dataclasses.field(default_factory=dict)
    presences: typing.Mapping[int, bytes] = dataclasses.field(default_factory=dict)
    #: message id -> JSON.
    messages: typing.Mapping[int, bytes] = dataclasses.field(default_factory=dict)


#: Nothing read: every getter answers "not cached".
EMPTY: typing.Final = Snapshot()


def register(redis: typing.Any) -> AsyncScript:
    return typing.cast("AsyncScript", redis.register_script(_READ))


def _request(redis_keys: keys.RedisKeys, request: SnapshotRequest) -> dict[str, typing.Any]:
    guild_id = request.guild_id
    guild = 0 if guild_id is None else guild_id
    return {
        "g": "" if guild_id is None else str(guild_id),
        "k": {
            "g": redis_keys.guild(guild),
            "un": redis_keys.unavailable_guilds(),
            "r": redis_keys.guild_roles(guild),
            "c": redis_keys.guild_channels(guild),
            "e": redis_keys.guild_emojis(guild),
            "v": redis_keys.guild_voice_states(guild),
            "p": redis_keys.guild_presences(guild),
        },
        "u": [
            [
                redis_keys.member_bucket(guild, user_id),
                codec.pair_bytes(guild, user_id).hex(),
                redis_keys.user_bucket(user_id),
                codec.id_bytes(user_id).hex(),
                str(user_id),
            ]
            for user_id in request.user_ids
        ],
        "c": [str(i) for i in request.channel_ids],
        "r": [str(i) for i in request.role_ids],
        "e": [str(i) for i in request.emoji_ids],
        "m": [redis_keys.message(c, m) for c, m in request.messages],
    }


def _by_id(ids: typing.Sequence[int], values: list[bytes | None]) -> dict[int, bytes]:
    return {i: v for i, v in zip(ids, values, strict=False) if v is not None}


def _pairs(flat: list[bytes]) -> dict[int, bytes]:
    return {int(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _snapshot(
    request: SnapshotRequest, answer: list[typing.Any], earlier: list[Snapshot]
) -> Snapshot:
    guild, unavailable, roles, complete, channels, emojis = answer[:6]
    members, users, voice, presences, messages = answer[6:11]
    guild_roles: typing.Mapping[int, bytes] = _pairs(roles)
    if isinstance(guild, int):  # as an earlier request of this call (Lua counts from 1)
        same = earlier[guild - 1]
        guild, unavailable = same.guild, same.unavailable
        if complete == -1:
            guild_roles, complete = same.roles, 1
    return Snapshot(
        guild_id=request.guild_id,
        guild=guild,
        unavailable=bool(unavailable),
        roles=guild_roles,
        all_roles=bool(complete),
        channels=_pairs(channels),
        emojis=_by_id(request.emoji_ids, emojis),
        members=_by_id(request.user_ids, members),
        users=_by_id(request.user_ids, users),
        voice_states=_by_id(request.user_ids, voice),
        presences=_by_id(request.user_ids, presences),
        messages=_by_id([m for _, m in request.messages], messages),
    )


async def read(
    script: AsyncScript, redis_keys: keys.RedisKeys, requests: typing.Sequence[SnapshotRequest]
) -> list[Snapshot]:
    """One snapshot per request, from one script call (on a Redis Cluster, from pipelines)."""
    if not requests:
        return []
    if redis_client.is_cluster(script.registered_client):
        return await _read_apart(script.registered_client, redis_keys, requests)
    answers = await script(args=[orjson.dumps(argument(redis_keys, requests))])
    return snapshots(requests, answers)


def argument(
    redis_keys: keys.RedisKeys, requests: typing.Sequence[SnapshotRequest]
) -> dict[str, typing.Any]:
    """What ``read_snapshots`` (:data:`READ_FUNCTIONS`) takes for ``requests``."""
    return {"l": ALL_ROLES_UP_TO, "q": [_request(redis_keys, r) for r in requests]}


def snapshots(
    requests: typing.Sequence[SnapshotRequest], answers: typing.Sequence[typing.Any]
) -> list[Snapshot]:
    """The snapshots ``read_snapshots`` answered for ``requests``."""
    found: list[Snapshot] = []
    for request, answer in zip(requests, answers, strict=True):
        found.append(_snapshot(request, answer, found))
    return found


async def _read_apart(
    redis: typing.Any, redis_keys: keys.RedisKeys, requests: typing.Sequence[SnapshotRequest]
) -> list[Snapshot]:
    """What the script answers, on a Redis Cluster: a guild's keys, the member and user
    buckets and the messages live in different slots, so they are read with pipelines (which
    redis-py splits by node) in three round trips instead of one script call."""
    async with redis.pipeline(transaction=False) as pipe:
        for request in requests:
            _first_reads(pipe, redis_keys, request)
        first = await pipe.execute()
    answers: list[list[typing.Any]] = []
    position = 0
    for request in requests:
        count = _first_count(request)
        answers.append(first[position : position + count])
        position += count
    for request, answer in zip(requests, answers, strict=True):
        await _join_packed(redis, redis_keys, request, answer)
    async with redis.pipeline(transaction=False) as pipe:
        for request, answer in zip(requests, answers, strict=True):
            _second_reads(pipe, redis_keys, request, answer)
        second = iter(await pipe.execute())
    found = []
    for request, answer in zip(requests, answers, strict=True):
        found.append(await _assemble(redis, redis_keys, request, answer, second))
    return found


def _first_count(request: SnapshotRequest) -> int:
    users = len(request.user_ids) * (2 if request.guild_id is not None else 1)
    guild = 7 if request.guild_id is not None else 0
    return users + guild + len(request.messages)


def _packed_fields(redis_keys: keys.RedisKeys, request: SnapshotRequest) -> list[tuple[str, bytes]]:
    """Bucket and field of each user and member the request names, in ``_first_reads``' order."""
    guild_id = request.guild_id
    found = []
    for user_id in request.user_ids:
        found.append((redis_keys.user_bucket(user_id), codec.id_bytes(user_id)))
        if guild_id is not None:
            found.append(
                (redis_keys.member_bucket(guild_id, user_id), codec.pair_bytes(guild_id, user_id))
            )
    return found


async def _join_packed(
    redis: typing.Any,
    redis_keys: keys.RedisKeys,
    request: SnapshotRequest,
    answer: list[typing.Any],
) -> None:
    """The users' and members' pieces (``codec.pieces``) of ``answer`` joined, in place; a
    value of more pieces than read at first (rare) takes one more read."""
    for index, (bucket, field) in enumerate(_packed_fields(redis_keys, request)):
        value, complete = codec.joined(answer[index])
        if not complete:
            found = answer[index]
            rest = await redis.hmget(
                bucket, codec.piece_fields(field, codec.MAX_PIECES - len(found), len(found))
            )
            value, _ = codec.joined([*found, *rest])
        answer[index] = value


def _first_reads(pipe: typing.Any, redis_keys: keys.RedisKeys, request: SnapshotRequest) -> None:
    guild_id = request.guild_id
    for bucket, field in _packed_fields(redis_keys, request):
        pipe.hmget(bucket, codec.piece_fields(field))
    if guild_id is not None:
        users = [str(u) for u in request.user_ids]
        pipe.get(redis_keys.guild(guild_id))
        pipe.sismember(redis_keys.unavailable_guilds(), str(guild_id))
        pipe.hlen(redis_keys.guild_roles(guild_id))
        _hmget(pipe, redis_keys.guild_channels(guild_id), [str(c) for c in request.channel_ids])
        _hmget(pipe, redis_keys.guild_emojis(guild_id), [str(e) for e in request.emoji_ids])
        _hmget(pipe, redis_keys.guild_voice_states(guild_id), users)
        _hmget(pipe, redis_keys.guild_presences(guild_id), users)
    for channel_id, message_id in request.messages:
        pipe.get(redis_keys.message(channel_id, message_id))


def _hmget(pipe: typing.Any, key: str, fields: list[str]) -> None:
    # HMGET needs a field; an empty read keeps the answers' positions.
    if fields:
        pipe.hmget(key, fields)
    else:
        pipe.exists(key)


def _second_reads(
    pipe: typing.Any, redis_keys: keys.RedisKeys, request: SnapshotRequest, answer: list[typing.Any]
) -> None:
    """The guild's roles: all of a small guild's, else those the event and its members name."""
    guild_id = request.guild_id
    if guild_id is None:
        return
    users = len(request.user_ids) * 2
    role_count = answer[users + 2]
    if role_count <= ALL_ROLES_UP_TO:
        pipe.hgetall(redis_keys.guild_roles(guild_id))
        return
    wanted = dict.fromkeys([guild_id, *request.role_ids])
    for packed in answer[1:users:2]:
        if packed is not None:
            wanted.update(dict.fromkeys(codec.member_role_ids(packed)))
    pipe.hmget(redis_keys.guild_roles(guild_id), [str(r) for r in wanted])


async def _assemble(
    redis: typing.Any,
    redis_keys: keys.RedisKeys,
    request: SnapshotRequest,
    answer: list[typing.Any],
    second: typing.Iterator[typing.Any],
) -> Snapshot:
    guild_id = request.guild_id
    ids = list(request.user_ids)
    messages = [m for _, m in request.messages]
    if guild_id is None:
        users = answer[: len(ids)]
        return Snapshot(users=_by_id(ids, users), messages=_by_id(messages, answer[len(ids) :]))
    users, members = answer[0 : 2 * len(ids) : 2], answer[1 : 2 * len(ids) : 2]
    guild, unavailable, role_count, channels, emojis, voice, presences = answer[
        2 * len(ids) : 2 * len(ids) + 7
    ]
    roles_read = next(second)
    complete = role_count <= ALL_ROLES_UP_TO
    if complete:
        roles = {int(k): v for k, v in roles_read.items()}
    else:
        asked = dict.fromkeys([guild_id, *request.role_ids])
        for packed in members:
            if packed is not None:
                asked.update(dict.fromkeys(codec.member_role_ids(packed)))
        roles = _by_id(list(asked), roles_read)
    found_channels = _by_id(list(request.channel_ids), channels) if request.channel_ids else {}
    parents = _thread_parents(found_channels)
    if parents:
        values = await redis.hmget(redis_keys.guild_channels(guild_id), [str(p) for p in parents])
        found_channels.update(_by_id(parents, values))
    return Snapshot(
        guild_id=guild_id,
        guild=guild,
        unavailable=bool(unavailable),
        roles=roles,
        all_roles=complete,
        channels=found_channels,
        emojis=_by_id(request.emoji_ids, emojis) if request.emoji_ids else {},
        members=_by_id(ids, members),
        users=_by_id(ids, users),
        voice_states=_by_id(ids, voice) if ids else {},
        presences=_by_id(ids, presences) if ids else {},
        messages=_by_id(messages, answer[2 * len(ids) + 7 :]),
    )


#: Announcement, public and private threads (Channel > Channel Types 10, 11, 12).
_THREAD_TYPES: typing.Final = frozenset({10, 11, 12})


def _thread_parents(channels: dict[int, bytes]) -> list[int]:
    """Parents of the threads among ``channels`` not read yet (as the script does)."""
    parents = []
    for raw in channels.values():
        channel = orjson.loads(raw)
        parent = channel.get("parent_id")
        if (
            channel.get("type") in _THREAD_TYPES
            and isinstance(parent, str)
            and int(parent) not in channels
            and int(parent) not in parents
        ):
            parents.append(int(parent))
    return parents
