"""The cache writer against real Redis: every state-changing event, read back as hikari
models (``shared.cache.writer``)."""

from __future__ import annotations

import asyncio
import time
import typing

import hikari

from shared import keys as keys_module
from shared.cache import codec, resources, writer
from tests.shared.cache.conftest import Cache, guild_with, make_cache

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis


async def test_guild_create_then_models(cache: Cache) -> None:
    payload = guild_with(cache, members=3)
    guild_id = int(payload["id"])
    await cache.apply("GUILD_CREATE", payload)
    guild = await cache.reader.get_guild(guild_id)
    assert isinstance(guild, hikari.RESTGuild)
    assert guild.name == "g"
    assert guild.owner_id == int(payload["owner_id"])
    assert [r.name for r in guild.roles.values()] == ["@everyone"]
    channels = await cache.reader.get_guild_channels(guild_id)
    assert sorted(c.name or "" for c in channels) == ["channel-0", "channel-1"]
    assert all(isinstance(c, hikari.GuildTextChannel) for c in channels)
    channel = await cache.reader.get_channel(int(payload["channels"][0]["id"]))
    assert isinstance(channel, hikari.GuildTextChannel)
    assert channel.guild_id == guild_id
    members = await cache.reader.member_ids(guild_id)
    assert len(members) == len(payload["members"])
    some = payload["members"][-1]
    member = await cache.reader.get_member(guild_id, int(some["user"]["id"]))
    assert isinstance(member, hikari.Member)
    assert member.username == some["user"]["username"]
    assert member.guild_id == guild_id
    user = await cache.reader.get_user(int(some["user"]["id"]))
    assert isinstance(user, hikari.User)
    assert user.username == some["user"]["username"]
    assert await cache.reader.guild_ids() == {guild_id}
    assert (await cache.reader.counts(guild_id))["channels"] == 2


async def test_users_are_stored_once_across_guilds(
    cache: Cache, redis_client: aioredis.Redis
) -> None:
    shared_user = cache.world.add_user("everywhere")
    guild_ids = []
    for index in range(3):
        guild = cache.world.add_guild(f"g{index}")
        cache.world.add_member(int(guild["id"]), shared_user)
        guild_ids.append(int(guild["id"]))
        payload = cache.world.guild_create_payload(int(guild["id"]), presences=True)
        await cache.apply("GUILD_CREATE", payload)
    user_id = int(shared_user["id"])
    bucket = cache.reader.keys.user_bucket(user_id)
    assert await redis_client.hexists(bucket, codec.id_bytes(user_id))
    for guild_id in guild_ids:
        assert (await cache.reader.get_member(guild_id, user_id)) is not None
    renamed = {**shared_user, "username": "renamed"}
    await cache.apply(
        "GUILD_MEMBER_UPDATE",
        {
            "guild_id": str(guild_ids[0]),
            "user": renamed,
            "roles": [],
            "joined_at": "2020-01-01T00:00:00+00:00",
        },
    )
    for guild_id in guild_ids:
        member = await cache.reader.get_member(guild_id, user_id)
        assert member is not None
        assert member.username == "renamed"


async def test_channel_thread_role_emoji_events(cache: Cache) -> None:
    payload = guild_with(cache)
    guild_id = int(payload["id"])
    await cache.apply("GUILD_CREATE", payload)
    channel = cache.world.add_channel(guild_id, "new")
    await cache.apply("CHANNEL_CREATE", channel)
    assert (await cache.reader.get_channel(int(channel["id"]))) is not None
    await cache.apply("CHANNEL_UPDATE", {**channel, "name": "renamed"})
    updated = await cache.reader.get_channel(int(channel["id"]))
    assert updated is not None
    assert updated.name == "renamed"
    await cache.apply("CHANNEL_DELETE", channel)
    assert await cache.reader.get_channel(int(channel["id"])) is None
    thread = {
        **cache.world.add_channel(guild_id, "thread", kind=11),
        "parent_id": payload["channels"][0]["id"],
        "owner_id": "1",
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 60,
            "archive_timestamp": "2024-01-01T00:00:00+00:00",
            "locked": False,
        },
        "member_count": 1,
        "message_count": 0,
    }
    await cache.apply("THREAD_CREATE", thread)
    assert isinstance(await cache.reader.get_channel(int(thread["id"])), hikari.GuildThreadChannel)
    await cache.apply(
        "THREAD_DELETE",
        {
            "id": thread["id"],
            "guild_id": str(guild_id),
            "parent_id": thread["parent_id"],
            "type": 11,
        },
    )
    assert await cache.reader.get_channel(int(thread["id"])) is None
    role = {
        "id": "42",
        "name": "mods",
        "color": 0,
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": 1,
        "permissions": "8",
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }
    await cache.apply("GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": role})
    fetched = await cache.reader.get_role(guild_id, 42)
    assert fetched is not None
    assert fetched.name == "mods"
    await cache.apply(
        "GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": {**role, "name": "admins"}}
    )
    assert [r.name for r in await cache.reader.get_roles(guild_id)] == ["@everyone", "admins"]
    await cache.apply("GUILD_ROLE_DELETE", {"guild_id": str(guild_id), "role_id": "42"})
    assert await cache.reader.get_role(guild_id, 42) is None
    emoji = {
        "id": "77",
        "name": "blob",
        "roles": [],
        "user": None,
        "require_colons": True,
        "managed": False,
        "animated": False,
        "available": True,
    }
    await cache.apply("GUILD_EMOJIS_UPDATE", {"guild_id": str(guild_id), "emojis": [emoji]})
    guild = await cache.reader.get_guild(guild_id)
    assert guild is not None
    assert [e.name for e in guild.emojis.values()] == ["blob"]
    await cache.apply(
        "GUILD_UPDATE",
        {
            **{k: v for k, v in payload.items() if k not in ("members", "channels")},
            "name": "new name",
        },
    )
    guild = await cache.reader.get_guild(guild_id)
    assert guild is not None
    assert guild.name == "new name"
    assert guild.approximate_member_count == payload["member_count"], "merged over GUILD_CREATE"


async def test_member_add_update_remove_and_voice(cache: Cache) -> None:
    payload = guild_with(cache)
    guild_id = int(payload["id"])
    await cache.apply("GUILD_CREATE", payload)
    user = cache.world.add_user("newcomer")
    member = {
        "user": user,
        "roles": [],
        "joined_at": "2024-05-01T10:00:00+00:00",
        "nick": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "guild_id": str(guild_id),
    }
    await cache.apply("GUILD_MEMBER_ADD", member)
    stored = await cache.reader.get_member(guild_id, int(user["id"]))
    assert stored is not None
    assert stored.joined_at.year == 2024
    await cache.apply("GUILD_MEMBER_UPDATE", {**member, "nick": "nicky", "roles": [str(guild_id)]})
    stored = await cache.reader.get_member(guild_id, int(user["id"]))
    assert stored is not None
    assert stored.nickname == "nicky"
    voice = cache.world.add_channel(guild_id, "voice", kind=2)
    state = {
        "guild_id": str(guild_id),
        "channel_id": voice["id"],
        "user_id": user["id"],
        "session_id": "s",
        "deaf": False,
        "mute": False,
        "self_deaf": False,
        "self_mute": True,
        "self_video": False,
        "suppress": False,
        "request_to_speak_timestamp": None,
    }
    await cache.apply("VOICE_STATE_UPDATE", state)
    voice_state = await cache.reader.get_voice_state(guild_id, int(user["id"]))
    assert voice_state is not None
    assert voice_state.channel_id == int(voice["id"])
    assert voice_state.is_self_muted
    await cache.apply("VOICE_STATE_UPDATE", {**state, "channel_id": None})
    assert await cache.reader.get_voice_state(guild_id, int(user["id"])) is None
    await cache.apply("GUILD_MEMBER_REMOVE", {"guild_id": str(guild_id), "user": user})
    assert await cache.reader.get_member(guild_id, int(user["id"])) is None
    assert int(user["id"]) not in await cache.reader.member_ids(guild_id)
    assert await cache.reader.get_user(int(user["id"])) is not None, "users outlive membership"


async def test_unavailable_vs_removed_guilds(cache: Cache) -> None:
    payload = guild_with(cache)
    guild_id = int(payload["id"])
    await cache.apply("GUILD_CREATE", payload)
    await cache.apply("GUILD_DELETE", {"id": str(guild_id), "unavailable": True})
    assert guild_id in await cache.reader.unavailable_guild_ids()
    assert await cache.reader.get_guild(guild_id) is not None, "an outage keeps the data"
    await cache.apply("GUILD_CREATE", payload)
    assert guild_id not in await cache.reader.unavailable_guild_ids()
    await cache.apply("GUILD_DELETE", {"id": str(guild_id)})
    assert await cache.reader.get_guild(guild_id) is None
    assert await cache.reader.member_ids(guild_id) == set()
    assert await cache.reader.get_channel(int(payload["channels"][0]["id"])) is None
    assert guild_id not in await cache.reader.guild_ids()


async def test_deletes_for_unknown_entities_are_harmless(cache: Cache) -> None:
    for event, d in [
        ("GUILD_DELETE", {"id": "1"}),
        ("CHANNEL_DELETE", {"id": "2", "guild_id": "1", "type": 0}),
        ("THREAD_DELETE", {"id": "3", "guild_id": "1", "type": 11}),
        ("GUILD_ROLE_DELETE", {"guild_id": "1", "role_id": "4"}),
        ("GUILD_MEMBER_REMOVE", {"guild_id": "1", "user": {"id": "5"}}),
        ("MESSAGE_DELETE", {"id": "6", "channel_id": "2"}),
        ("VOICE_STATE_UPDATE", {"guild_id": "1", "user_id": "5", "channel_id": None}),
    ]:
        await cache.apply(event, d)
    assert await cache.reader.guild_ids() == set()


async def test_a_reidentifying_shard_drops_its_stale_guilds(cache: Cache) -> None:
    kept, gone = guild_with(cache), guild_with(cache)
    for payload in (kept, gone):
        await cache.apply("GUILD_CREATE", payload, shard_id=3)
    ready = {"user": cache.world.bot_user, "guilds": [{"id": kept["id"], "unavailable": True}]}
    await cache.apply("READY", ready, shard_id=3)
    assert await cache.reader.guild_ids() == {int(kept["id"])}
    assert await cache.reader.get_guild(int(gone["id"])) is None
    assert await cache.reader.member_ids(int(gone["id"])) == set()
    assert int(kept["id"]) in await cache.reader.unavailable_guild_ids()


async def test_resharding_keeps_the_guilds_other_shards_now_own(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """1 → 2 shards: the new layout's shard 0 re-identifies listing only its half; the guilds
    that moved to shard 1 stay cached (they were dropped while the key ignored the count)."""
    old = make_cache(redis_client, namespace)
    old.writer = writer.CacheWriter(old.writer.keys, resources.ALL, shard_count=1)
    # Snowflakes whose bit 22 picks the shard of two: guild ``k << 22`` lives on shard k % 2.
    even, odd = (old.world.add_guild("g", guild_id=k << 22) for k in (2, 3))
    for guild in (even, odd):
        await old.apply("GUILD_CREATE", old.world.guild_create_payload(int(guild["id"])))
    new = make_cache(redis_client, namespace)
    new.writer = writer.CacheWriter(new.writer.keys, resources.ALL, shard_count=2)
    for shard_id, guild in ((0, even), (1, odd)):
        ready = {"user": new.world.bot_user, "guilds": [{"id": guild["id"], "unavailable": True}]}
        await new.apply("READY", ready, shard_id=shard_id)
        assert await new.reader.guild_ids() == {int(even["id"]), int(odd["id"])}
        assert await new.reader.get_guild(int(odd["id"])) is not None
        assert await new.reader.get_guild(int(even["id"])) is not None
    # Within the new layout a re-identify still drops what its shard no longer lists.
    await new.apply("READY", {"user": new.world.bot_user, "guilds": []}, shard_id=1)
    assert await new.reader.guild_ids() == {int(even["id"])}


async def test_resource_flags_off(redis_client: aioredis.Redis, namespace: str) -> None:
    cache = make_cache(
        redis_client, namespace, resources.CacheResource.GUILDS | resources.CacheResource.ROLES
    )
    payload = guild_with(cache)
    guild_id = int(payload["id"])
    await cache.apply("GUILD_CREATE", payload)
    assert await cache.reader.get_guild(guild_id) is not None
    assert await cache.reader.get_guild_channels(guild_id) == []
    assert await cache.reader.member_ids(guild_id) == set()
    some = payload["members"][0]["user"]
    assert await cache.reader.get_user(int(some["id"])) is None
    message = cache.world.make_message(int(payload["channels"][0]["id"]), some, "hi")
    await cache.apply("MESSAGE_CREATE", message)
    assert not await redis_client.exists(
        cache.reader.keys.message(int(message["channel_id"]), int(message["id"]))
    )


async def test_messages_when_switched_on(redis_client: aioredis.Redis, namespace: str) -> None:
    cache = make_cache(redis_client, namespace, resources.ALL)
    payload = guild_with(cache)
    message = cache.world.make_message(
        int(payload["channels"][0]["id"]), payload["members"][0]["user"], "hi"
    )
    await cache.apply("MESSAGE_CREATE", message)
    key = cache.reader.keys.message(int(message["channel_id"]), int(message["id"]))
    assert 0 < await redis_client.ttl(key) <= 3600
    await cache.apply("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"]})
    assert not await redis_client.exists(key)


async def test_a_100k_member_guild_create_lets_the_loop_breathe(cache: Cache) -> None:
    guild = cache.world.add_guild("huge")
    guild_id = int(guild["id"])
    payload = cache.world.guild_create_payload(guild_id)
    template = payload["members"][0]
    payload["members"] = [
        {**template, "user": {**template["user"], "id": str(10**17 + i), "username": f"u{i}"}}
        for i in range(100_000)
    ]
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beating = asyncio.get_running_loop().create_task(heartbeat())
    started = time.monotonic()
    await cache.apply("GUILD_CREATE", payload)
    took = time.monotonic() - started
    stop.set()
    await beating
    assert len(await cache.reader.member_ids(guild_id)) == 100_000
    # The loop ran between slices: a heartbeat task kept ticking, never stalled for long
    # (relative to the whole write, which a loaded machine stretches along with each slice).
    assert len(gaps) > 10
    assert max(gaps) < took / 5, (max(gaps), took)


async def test_malformed_payloads_are_skipped_and_the_rest_is_written(cache: Cache) -> None:
    good = guild_with(cache)
    await cache.writer.write(
        cache.redis,
        [
            (0, "GUILD_MEMBER_ADD", {"guild_id": "not a number", "user": {"id": "x"}}),
            (0, "CHANNEL_CREATE", {"guild_id": "1"}),
            (0, "GUILD_ROLE_CREATE", {"guild_id": "1", "role": None}),
            (0, "GUILD_CREATE", good),
        ],
    )
    assert cache.writer.malformed == 3
    assert await cache.reader.get_guild(int(good["id"])) is not None


def test_events_of_a_resource_that_is_off_are_not_claimed_by_the_writer() -> None:
    """The gateway publishes what the writer does not handle without waiting on Redis."""
    names = keys_module.RedisKeys("ns", "main")
    default = writer.CacheWriter(names, resources.DEFAULT, shard_count=1)
    everything = writer.CacheWriter(names, resources.ALL, shard_count=1)
    # MESSAGE_CREATE carries its author's member (issue 23): written whenever members are.
    assert default.handles("MESSAGE_CREATE")
    assert not default.handles("PRESENCE_UPDATE")
    bare = writer.CacheWriter(
        names, resources.CacheResource.GUILDS | resources.CacheResource.ROLES, shard_count=1
    )
    assert not bare.handles("MESSAGE_CREATE")
    assert not bare.handles("INTERACTION_CREATE")
    assert default.handles("GUILD_MEMBER_ADD")
    assert default.handles("VOICE_STATE_UPDATE")  # also refreshes the member
    assert everything.handles("MESSAGE_CREATE")
    assert everything.handles("PRESENCE_UPDATE")


async def test_members_that_events_carry_are_cached(cache: Cache) -> None:
    """Issue 23: without GUILD_PRESENCES nobody is chunked, so the member a MESSAGE_CREATE
    (partial, author apart), INTERACTION_CREATE, MESSAGE_REACTION_ADD, TYPING_START or
    VOICE_STATE_UPDATE carries is stored and the next permission check is local."""
    guild = cache.world.add_guild("g")
    guild_id = int(guild["id"])
    channel_id = int(cache.world.guild_channels(guild_id)[0]["id"])
    await cache.apply("GUILD_CREATE", cache.world.guild_create_payload(guild_id))
    role = cache.world.snowflakes.next()
    users = [cache.world.add_user(f"u{i}") for i in range(4)]
    members = [cache.world.add_member(guild_id, u, roles=[role]) for u in users]
    message = cache.world.make_message(channel_id, users[0], "hi", member=members[0])
    assert "user" not in message["member"]
    await cache.apply("MESSAGE_CREATE", message)
    base = {"guild_id": str(guild_id), "channel_id": str(channel_id)}
    await cache.apply("INTERACTION_CREATE", {**base, "id": "1", "member": members[1]})
    await cache.apply(
        "MESSAGE_REACTION_ADD",
        {**base, "user_id": users[2]["id"], "message_id": "1", "member": members[2]},
    )
    await cache.apply("TYPING_START", {**base, "user_id": users[3]["id"], "member": members[3]})
    for user in users:
        member = await cache.reader.get_member(guild_id, int(user["id"]))
        assert member is not None
        assert member.username == user["username"]
        assert role in member.role_ids
        assert int(user["id"]) in await cache.reader.member_ids(guild_id)
    # An unchanged member is not written again, but a removal or a change is never hidden.
    await cache.apply("GUILD_MEMBER_REMOVE", {"guild_id": str(guild_id), "user": users[0]})
    assert await cache.reader.get_member(guild_id, int(users[0]["id"])) is None
    await cache.apply("MESSAGE_CREATE", message)
    assert await cache.reader.get_member(guild_id, int(users[0]["id"])) is not None
    other_role = cache.world.snowflakes.next()
    changed = cache.world.make_message(
        channel_id, users[0], "again", member={**members[0], "roles": [str(other_role)]}
    )
    await cache.apply("MESSAGE_CREATE", changed)
    member = await cache.reader.get_member(guild_id, int(users[0]["id"]))
    assert member is not None
    assert other_role in member.role_ids
