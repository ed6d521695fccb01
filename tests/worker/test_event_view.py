"""hikari's event helpers on a worker (``worker.event_view``, ``worker.cache_view``): the cache
written by the gateway's writer, hikari's own events built from Discord-shaped payloads, then
``event.get_guild()`` and friends answer the model or ``None``, never a coroutine."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import typing
import urllib.parse

import hikari
import orjson
import pytest

from playground.discord import world as world_module
from shared import clock, config, envelope, keys, redis_client
from shared.cache import reader, resources, snapshot, writer
from shared.secret import Secret
from tests import netproxy
from worker import app, dedupe, event_view
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from tests.gateway.conftest import Stack

Json = dict[str, typing.Any]


@dataclasses.dataclass
class Setup:
    bot: bot_module.Bot
    writer: writer.CacheWriter
    reader: reader.CacheReader
    redis: aioredis.Redis
    world: world_module.World
    seq: int = 0

    async def write(self, name: str, d: Json) -> None:
        await self.writer.write(self.redis, [(0, name, d)])

    def item(self, name: str, d: Json) -> envelope.EventEnvelope:
        self.seq += 1
        wire = envelope.wire("main", "gw", "rq", 0, 1, "s", self.seq, name, d, time.time())
        [decoded] = envelope.decode_message(orjson.dumps(wire))
        return decoded

    def build(self, name: str, d: Json) -> list[hikari.Event]:
        return self.bot.events.build(name, typing.cast("typing.Any", None), d)

    async def entities(self, name: str, d: Json) -> event_view.cache_view.Entities:
        [found] = await event_view.read(self.reader, [self.item(name, d)])
        return found


async def _noop(event: hikari.Event) -> None:
    del event


@pytest.fixture
def setup(redis_client: aioredis.Redis, namespace: str) -> Setup:
    bot = bot_module.Bot()
    for kind in (
        hikari.GuildMessageCreateEvent,
        hikari.GuildReactionAddEvent,
        hikari.GuildTypingEvent,
        hikari.MemberUpdateEvent,
        hikari.InteractionCreateEvent,
        hikari.GuildChannelUpdateEvent,
    ):
        bot.events.subscribe(kind, _noop)
    redis_keys = keys.RedisKeys(namespace, "main")
    return Setup(
        bot,
        writer.CacheWriter(redis_keys, resources.ALL, shard_count=1),
        reader.CacheReader(redis_client, redis_keys, bot.entity_factory),
        redis_client,
        world_module.World(),
    )


def add_role(world: world_module.World, guild_id: int, name: str, position: int) -> Json:
    role: Json = {
        "id": str(world.snowflakes.next()), "name": name, "color": 0, "hoist": False,
        "icon": None, "unicode_emoji": None, "position": position, "permissions": "8",
        "managed": False, "mentionable": True, "flags": 0,
    }  # fmt: skip
    world.guilds[guild_id]["roles"].append(role)
    return role


async def guild_with_member(setup: Setup, *, extra_roles: int = 0) -> tuple[Json, Json, Json]:
    """A cached guild, its text channel, and a member holding a role (GUILD_CREATE written)."""
    world = setup.world
    guild = world.add_guild("cafe", channels=1)
    guild_id = int(guild["id"])
    for index in range(extra_roles):
        add_role(world, guild_id, f"filler-{index}", 1)
    role = add_role(world, guild_id, "barista", 5)
    user = world.add_user("alice")
    member = world.add_member(guild_id, user, roles=[int(role["id"])])
    await setup.write("GUILD_CREATE", world.guild_create_payload(guild_id, presences=True))
    return guild, world.guild_channels(guild_id)[0], member


def message(setup: Setup, channel: Json, member: Json, text: str, **extra: typing.Any) -> Json:
    payload = setup.world.make_message(int(channel["id"]), member["user"], text, member=member)
    payload.update(extra)
    return typing.cast("Json", payload)


async def test_a_guild_message_event_answers_guild_member_channel_and_roles(setup: Setup) -> None:
    guild, channel, member = await guild_with_member(setup)
    guild_id, role_id = int(guild["id"]), int(member["roles"][0])
    other = setup.world.add_user("bob")
    setup.world.add_member(guild_id, other)
    await setup.write("GUILD_MEMBER_ADD", {**setup.world.members[guild_id][int(other["id"])],
                                           "guild_id": str(guild_id)})  # fmt: skip
    d = message(setup, channel, member, "hi bob", mentions=[other], mention_roles=[str(role_id)])
    await setup.write("MESSAGE_CREATE", d)
    [event] = setup.build("MESSAGE_CREATE", d)
    assert isinstance(event, hikari.GuildMessageCreateEvent)

    with event_view.handling(await setup.entities("MESSAGE_CREATE", d)):
        got_guild = event.get_guild()
        got_member = event.get_member()
        got_channel = event.get_channel()
        assert isinstance(got_guild, hikari.GatewayGuild)
        assert (got_guild.id, got_guild.name) == (guild_id, "cafe")
        assert isinstance(got_member, hikari.Member)
        assert got_member.id == int(member["user"]["id"])
        assert got_member.username == "alice"
        assert {r.name for r in got_member.get_roles()} == {"barista", "@everyone"}
        top = got_member.get_top_role()
        assert top is not None
        assert top.name == "barista"
        assert got_member.get_guild() is got_guild
        assert isinstance(got_channel, hikari.GuildTextChannel)
        assert got_channel.id == int(channel["id"])
        assert got_channel.name == channel["name"]
        assert got_channel.get_guild() is got_guild
        mentions = event.message.get_member_mentions()
        assert [m.username for m in mentions.values()] == ["bob"]
        assert [r.name for r in event.message.get_role_mentions().values()] == ["barista"]
        assert {r.name for r in got_guild.get_roles().values()} == {"barista", "@everyone"}
        role = got_guild.get_role(role_id)
        assert role is not None
        assert role.name == "barista"
        found = got_guild.get_member(int(other["id"]))
        assert found is not None
        assert found.username == "bob"
        assert got_guild.get_channel(int(channel["id"])) is got_channel
        # Not read for this event: "not cached", as hikari documents None.
        assert got_guild.get_member(12345) is None
        assert got_guild.get_channels() == {}
        user = event.app.cache.get_user(int(other["id"]))
        assert user is not None
        assert user.username == "bob"

    # Outside the event's handling nothing is cached; still never a coroutine.
    assert event.get_guild() is None
    assert event.get_member() is None
    assert event.get_channel() is None


async def test_models_fetched_or_cached_outside_an_event_hold_the_synchronous_app(
    setup: Setup,
) -> None:
    guild, _, member = await guild_with_member(setup)
    cached = await setup.reader.get_member(int(guild["id"]), int(member["user"]["id"]))
    assert cached is not None
    assert cached.app is setup.bot.app
    assert cached.get_roles() == []  # nothing read for an event here: not a coroutine
    assert cached.get_guild() is None
    assert setup.bot.app.cache.get_guild(int(guild["id"])) is None


async def test_a_thread_message_reads_the_thread_and_its_parent(setup: Setup) -> None:
    guild, channel, member = await guild_with_member(setup)
    thread = setup.world.add_thread(int(channel["id"]), member["user"], "plans")
    await setup.write("THREAD_CREATE", thread)
    d = message(setup, thread, member, "in a thread")
    [event] = setup.build("MESSAGE_CREATE", d)
    assert isinstance(event, hikari.GuildMessageCreateEvent)
    with event_view.handling(await setup.entities("MESSAGE_CREATE", d)):
        cache = event.app.cache
        found = cache.get_thread(int(thread["id"]))
        assert isinstance(found, hikari.GuildThreadChannel)
        assert found.parent_id == int(channel["id"])
        parent = cache.get_guild_channel(found.parent_id)
        assert isinstance(parent, hikari.GuildTextChannel)
        assert parent.name == channel["name"]
        # hikari's cache keeps threads apart from guild channels: get_channel() is None there.
        assert event.get_channel() is None
        assert cache.get_guild_channel(int(thread["id"])) is None
        got_guild = event.get_guild()
        assert got_guild is not None
        assert got_guild.id == int(guild["id"])


async def test_in_a_guild_of_many_roles_the_members_roles_are_still_read(setup: Setup) -> None:
    guild, channel, member = await guild_with_member(
        setup, extra_roles=snapshot.ALL_ROLES_UP_TO + 5
    )
    d = message(setup, channel, member, "many roles")
    del d["member"]  # the member's roles come from the cache, cut out of the packed member
    [event] = setup.build("MESSAGE_CREATE", d)
    assert isinstance(event, hikari.GuildMessageCreateEvent)
    with event_view.handling(await setup.entities("MESSAGE_CREATE", d)):
        got_member = event.get_member()
        assert got_member is not None
        assert {r.name for r in got_member.get_roles()} == {"barista", "@everyone"}
        got_guild = event.get_guild()
        assert got_guild is not None
        assert got_guild.get_roles() == {}, "not all read: none claimed"
        assert len(guild["roles"]) > snapshot.ALL_ROLES_UP_TO


async def test_reaction_typing_member_and_interaction_events_answer(setup: Setup) -> None:
    guild, channel, member = await guild_with_member(setup)
    guild_id, channel_id, user = int(guild["id"]), int(channel["id"]), member["user"]
    emoji = {
        "id": str(setup.world.snowflakes.next()), "name": "tea", "roles": [],
        "require_colons": True, "managed": False, "animated": False, "available": True,
    }  # fmt: skip
    await setup.write("GUILD_EMOJIS_UPDATE", {"guild_id": str(guild_id), "emojis": [emoji]})
    posted = message(setup, channel, member, "react to me")
    await setup.write("MESSAGE_CREATE", posted)
    reaction = {
        "user_id": user["id"], "channel_id": str(channel_id), "message_id": posted["id"],
        "guild_id": str(guild_id), "member": member, "emoji": {"id": emoji["id"], "name": "tea"},
        "burst": False, "type": 0,
    }  # fmt: skip
    [added] = setup.build("MESSAGE_REACTION_ADD", reaction)
    assert isinstance(added, hikari.GuildReactionAddEvent)
    with event_view.handling(await setup.entities("MESSAGE_REACTION_ADD", reaction)):
        cache = added.app.cache
        known = cache.get_emoji(int(emoji["id"]))
        assert isinstance(known, hikari.KnownCustomEmoji)
        assert known.name == "tea"
        cached_message = cache.get_message(added.message_id)
        assert cached_message is not None
        assert cached_message.content == "react to me"
        reactor = cache.get_member(guild_id, added.user_id)
        assert reactor is not None
        assert reactor.username == "alice"

    typing_d = {"channel_id": str(channel_id), "guild_id": str(guild_id), "user_id": user["id"],
                "timestamp": int(time.time()), "member": member}  # fmt: skip
    [typed] = setup.build("TYPING_START", typing_d)
    assert isinstance(typed, hikari.GuildTypingEvent)
    with event_view.handling(await setup.entities("TYPING_START", typing_d)):
        typing_guild = typed.get_guild()
        assert typing_guild is not None
        assert typing_guild.name == "cafe"
        typing_channel = typed.get_channel()
        assert typing_channel is not None
        assert typing_channel.id == channel_id
        typing_user = typed.get_user()
        assert typing_user is not None
        assert typing_user.username == "alice"

    update = {**member, "guild_id": str(guild_id), "nick": "Al"}
    await setup.write("GUILD_MEMBER_UPDATE", update)
    [updated] = setup.build("GUILD_MEMBER_UPDATE", update)
    assert isinstance(updated, hikari.MemberUpdateEvent)
    with event_view.handling(await setup.entities("GUILD_MEMBER_UPDATE", update)):
        member_guild = updated.get_guild()
        assert member_guild is not None
        assert member_guild.id == guild_id
        assert {r.name for r in updated.member.get_roles()} == {"barista", "@everyone"}
        now = member_guild.get_member(int(user["id"]))
        assert now is not None
        assert now.nickname == "Al"

    interaction = {
        "id": str(setup.world.snowflakes.next()), "application_id": str(setup.world.bot_id),
        "type": 2, "token": "t", "version": 1, "guild_id": str(guild_id),
        "channel_id": str(channel_id), "channel": channel, "locale": "en-US",
        "member": {**member, "permissions": "8"}, "app_permissions": "8",
        "data": {"id": "1", "name": "order", "type": 1, "options": []},
        "entitlements": [], "authorizing_integration_owners": {}, "context": 0,
        "attachment_size_limit": 26_214_400, "guild_locale": "en-US",
    }  # fmt: skip
    [created] = setup.build("INTERACTION_CREATE", interaction)
    assert isinstance(created, hikari.InteractionCreateEvent)
    with event_view.handling(await setup.entities("INTERACTION_CREATE", interaction)):
        interaction_guild = created.interaction.get_guild()
        assert interaction_guild is not None
        assert interaction_guild.name == "cafe"


async def test_voice_states_and_presences_of_the_member_an_event_names(setup: Setup) -> None:
    guild, _, member = await guild_with_member(setup)
    guild_id, user = int(guild["id"]), member["user"]
    voice_channel = setup.world.add_channel(guild_id, "lounge", kind=2)
    await setup.write("CHANNEL_CREATE", voice_channel)
    state = setup.world.set_voice_state(guild_id, int(user["id"]), int(voice_channel["id"]), "s1")
    await setup.write("VOICE_STATE_UPDATE", state)
    presence = {"user": {"id": user["id"]}, "guild_id": str(guild_id), "status": "idle",
                "activities": [], "client_status": {"desktop": "idle"}}  # fmt: skip
    await setup.write("PRESENCE_UPDATE", presence)
    setup.bot.events.subscribe(hikari.VoiceStateUpdateEvent, _noop)
    [event] = setup.build("VOICE_STATE_UPDATE", state)
    assert isinstance(event, hikari.VoiceStateUpdateEvent)
    with event_view.handling(await setup.entities("VOICE_STATE_UPDATE", state)):
        got_guild = event.state.member.get_guild()
        assert got_guild is not None
        found = got_guild.get_voice_state(int(user["id"]))
        assert found is not None
        assert found.channel_id == int(voice_channel["id"])
        assert found.member.username == "alice"
        seen = event.state.member.get_presence()
        assert seen is not None
        assert seen.visible_status == hikari.Status.IDLE
        assert event.app.cache.get_guild_channel(int(voice_channel["id"])) is not None


async def test_one_round_trip_reads_every_event_of_a_message(setup: Setup) -> None:
    guild, channel, member = await guild_with_member(setup)
    items = [
        setup.item("MESSAGE_CREATE", message(setup, channel, member, f"m{i}")) for i in range(5)
    ]
    before = event_view.STATS.round_trips
    found = await event_view.read(setup.reader, items)
    assert event_view.STATS.round_trips == before + 1
    assert [e.snapshot.guild_id for e in found] == [int(guild["id"])] * 5
    assert all(int(member["user"]["id"]) in e.snapshot.members for e in found)
    # The guild's JSON and roles travel once per call, and every event has them.
    first = found[0].snapshot
    assert first.guild is not None
    assert first.all_roles
    assert all(e.snapshot.guild == first.guild for e in found)
    assert all(e.snapshot.roles == first.roles and e.snapshot.all_roles for e in found)
    other_guild, other_channel, other_member = await guild_with_member(setup)
    mixed = [
        setup.item("MESSAGE_CREATE", message(setup, other_channel, other_member, "a")),
        items[0],
        setup.item("MESSAGE_CREATE", message(setup, other_channel, other_member, "b")),
    ]
    a, b, c = [e.snapshot for e in await event_view.read(setup.reader, mixed)]
    assert (a.guild_id, b.guild_id, c.guild_id) == (
        int(other_guild["id"]), int(guild["id"]), int(other_guild["id"])
    )  # fmt: skip
    assert a.guild == c.guild != b.guild
    assert a.roles == c.roles != b.roles


async def test_messages_arriving_together_share_one_read(setup: Setup) -> None:
    guild, channel, member = await guild_with_member(setup)
    setup.bot._cache = setup.reader
    items = [
        [setup.item("MESSAGE_CREATE", message(setup, channel, member, f"m{i}"))] for i in range(8)
    ]
    before = event_view.STATS.round_trips
    found = await asyncio.gather(*(setup.bot.app.read(batch) for batch in items))
    assert event_view.STATS.round_trips == before + 1
    assert [f.snapshot.guild_id for [f] in found] == [int(guild["id"])] * 8


def claiming(setup: Setup, namespace: str) -> dedupe.Deduplicator:
    """A replica's deduplicator over the test's Redis, its bot reading the same cache."""
    setup.bot._cache = setup.reader
    return dedupe.Deduplicator(setup.redis, keys.RedisKeys(namespace, "main"), "w1")


async def test_the_dedupe_claim_reads_the_claimed_events_in_its_own_round_trip(
    setup: Setup, namespace: str
) -> None:
    guild, channel, member = await guild_with_member(setup)
    claims = claiming(setup, namespace)
    items = [setup.item("MESSAGE_CREATE", message(setup, channel, member, f"m{i}")) for i in (1, 2)]
    await claims.claim(items[1:], redelivered=False)  # the second is another replica's
    before = event_view.STATS.round_trips
    taken, found = await claims.claim_and_read(
        items, setup.bot.app.requests(items), redelivered=False
    )
    assert taken == items[:1]
    cluster = redis_client.is_cluster(setup.redis)
    # Read with the claim, and only for what it took: no read of its own (on a cluster the
    # keys are in other slots than the claim's: read apart, in pipelines).
    assert list(found) == ([] if cluster else [id(items[0])])
    [view] = await setup.bot.app.read(taken, found)
    assert event_view.STATS.round_trips == before + cluster
    assert view.snapshot.guild_id == int(guild["id"])
    assert int(member["user"]["id"]) in view.snapshot.members
    # The same as a read of its own answers.
    [alone] = await event_view.read(setup.reader, taken)
    assert view.snapshot == alone.snapshot
    # A redelivery's claim (a take-over, a wait for a live holder) carries no read.
    await claims.finish([], taken)  # released: the redelivery takes it again
    again, found = await claims.claim_and_read(
        taken, setup.bot.app.requests(taken), redelivered=True
    )
    assert (again, found) == (taken, {})


async def test_a_claim_call_reads_whole_messages_up_to_its_bound_and_the_rest_apart(
    setup: Setup, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dedupe, "READ_WITH_CLAIM", 3)
    _, channel, member = await guild_with_member(setup)
    claims = claiming(setup, namespace)
    messages = [
        [setup.item("MESSAGE_CREATE", message(setup, channel, member, f"m{i}-{j}")) for j in (1, 2)]
        for i in range(3)
    ]
    # Claimed together (one call): the first message's two reads ride along, the second's
    # would pass the bound, the third's too.
    answers = await asyncio.gather(
        *(
            claims.claim_and_read(items, setup.bot.app.requests(items), redelivered=False)
            for items in messages
        )
    )
    cluster = redis_client.is_cluster(setup.redis)
    assert [len(found) for _, found in answers] == ([0, 0, 0] if cluster else [2, 0, 0])
    before = event_view.STATS.round_trips
    views = await asyncio.gather(*(setup.bot.app.read(taken, found) for taken, found in answers))
    assert event_view.STATS.round_trips == before + 1  # the rest, read together
    assert all(int(member["user"]["id"]) in v.snapshot.members for vs in views for v in vs)


async def test_a_read_that_fails_in_the_claim_leaves_the_claim_and_reads_on_its_own(
    setup: Setup, namespace: str
) -> None:
    guild, channel, member = await guild_with_member(setup)
    claims = claiming(setup, namespace)
    items = [setup.item("MESSAGE_CREATE", message(setup, channel, member, "m"))]
    # A guild key holding a hash: the script's GET fails (WRONGTYPE), inside its read only.
    guild_key = keys.RedisKeys(namespace, "main").guild(int(guild["id"]))
    await setup.redis.delete(guild_key)
    await setup.redis.hset(guild_key, "x", "y")
    taken, found = await claims.claim_and_read(
        items, setup.bot.app.requests(items), redelivered=False
    )
    assert taken == items
    assert found == {}
    assert claims.reads_failed == (0 if redis_client.is_cluster(setup.redis) else 1)
    stored = await setup.redis.get(keys.RedisKeys(namespace, "main").dedupe(items[0].dedupe_key))
    assert stored == b"processing:w1"
    # The read of its own fails the same way: the helpers answer "not cached", nothing held.
    [view] = await setup.bot.app.read(taken, found)
    assert view.snapshot.guild is None


async def test_a_redis_failure_gives_an_empty_view_and_helpers_answer_none(
    setup: Setup, namespace: str
) -> None:
    _, channel, member = await guild_with_member(setup)
    # Nothing listens on this port: every call fails at once, as a dead Redis does.
    dead = redis_client.connect_guarded(
        Secret("redis://127.0.0.1:9/0"), clock=clock.SystemClock(), deadline=0.5
    )
    broken = reader.CacheReader(dead, keys.RedisKeys(namespace, "main"), setup.bot.entity_factory)
    d = message(setup, channel, member, "still handled")
    [event] = setup.build("MESSAGE_CREATE", d)
    assert isinstance(event, hikari.GuildMessageCreateEvent)
    failures = event_view.STATS.failures
    [found] = await event_view.read(broken, [setup.item("MESSAGE_CREATE", d)])
    assert event_view.STATS.failures == failures + 1
    with event_view.handling(found):
        assert event.get_guild() is None
        assert event.get_member() is None
        assert event.get_channel() is None
    await dead.aclose()


async def test_a_hung_redis_gives_an_empty_view_within_the_deadline(
    setup: Setup, namespace: str, redis_url: str
) -> None:
    _, channel, member = await guild_with_member(setup)
    # Only the proxy hangs (accepts, never answers); the Redis behind it is left alone.
    proxy = netproxy.TcpProxy(urllib.parse.urlsplit(redis_url).port or 6379)
    await proxy.start()
    guarded = redis_client.connect_guarded(
        Secret(f"redis://127.0.0.1:{proxy.port}/0"), clock=clock.SystemClock(), deadline=0.3
    )
    hung = reader.CacheReader(guarded, keys.RedisKeys(namespace, "main"), setup.bot.entity_factory)
    d = message(setup, channel, member, "during the hang")
    [event] = setup.build("MESSAGE_CREATE", d)
    assert isinstance(event, hikari.GuildMessageCreateEvent)
    try:
        [warm] = await event_view.read(hung, [setup.item("MESSAGE_CREATE", d)])
        assert warm.snapshot.guild is not None, "through the proxy before the hang"
        proxy.hang()
        [found] = await event_view.read(hung, [setup.item("MESSAGE_CREATE", d)])
        assert guarded.breaker.timeouts == 1, "ended by the breaker's deadline"
        with event_view.handling(found):
            assert event.get_guild() is None
            assert event.get_member() is None
    finally:
        proxy.resume()
        await guarded.aclose()
        await proxy.close()


async def test_the_bot_reads_through_its_app_and_a_bot_may_turn_the_read_off(
    setup: Setup,
) -> None:
    _, channel, member = await guild_with_member(setup)
    setup.bot._cache = setup.reader
    d = message(setup, channel, member, "hello")
    [event] = setup.build("MESSAGE_CREATE", d)
    assert isinstance(event, hikari.GuildMessageCreateEvent)
    assert event.app is setup.bot.app
    [read] = await setup.bot.app.read([setup.item("MESSAGE_CREATE", d)])
    with event_view.handling(read):
        assert event.get_member() is not None
    setup.bot.app.prefetch = False
    before = event_view.STATS.round_trips
    [skipped] = await setup.bot.app.read([setup.item("MESSAGE_CREATE", d)])
    assert event_view.STATS.round_trips == before
    with event_view.handling(skipped):
        assert event.get_member() is None


def test_what_an_event_names_is_read_and_nothing_else() -> None:
    d = {
        "id": "10", "channel_id": "20", "guild_id": "30", "author": {"id": "40"},
        "member": {"roles": ["50"]}, "mentions": [{"id": "41"}, {"id": "not-a-snowflake"}],
        "mention_roles": ["51"], "content": "x",
    }  # fmt: skip
    request = event_view.request_for("MESSAGE_CREATE", d)
    assert request == snapshot.SnapshotRequest(
        guild_id=30, user_ids=(40, 41), channel_ids=(20,), role_ids=(50, 51)
    )
    deleted = event_view.request_for("MESSAGE_DELETE", {"id": "10", "channel_id": "20"})
    assert deleted == snapshot.SnapshotRequest(channel_ids=(20,), messages=((20, 10),))
    guild = event_view.request_for("GUILD_UPDATE", {"id": "30", "roles": [{"id": "1"}]})
    assert guild == snapshot.SnapshotRequest(guild_id=30)
    assert event_view.request_for("READY", {"v": 10, "guilds": []}) is None
    assert event_view.request_for("lavalink.TrackStartEvent", {"guildId": "30"}) is None
    odd = {"guild_id": "²", "channel_id": str(1 << 64), "mentions": 5, "author": {"id": "7"}}
    assert event_view.request_for("MESSAGE_CREATE", odd) == snapshot.SnapshotRequest(
        user_ids=(7,)
    ), "what is not a snowflake is not read"
    many = {"guild_id": "30", "mentions": [{"id": str(i)} for i in range(1, 50)]}
    found = event_view.request_for("MESSAGE_CREATE", many)
    assert found is not None
    assert len(found.user_ids) == event_view.MAX_USERS


async def test_a_hikari_listener_module_runs_unchanged_on_a_worker(stack: Stack) -> None:
    discord = stack.discord
    guild = discord.add_guild("tearoom")
    guild_id = int(guild["id"])
    channel = discord.channels_of(guild_id)[0]
    role = add_role(discord.world, guild_id, "regular", 3)
    user = discord.add_user("carol")
    discord.world.add_member(guild_id, user, roles=[int(role["id"])])
    settings = config.WorkerSettings.from_env(
        stack.env(WORKER_PLUGINS="tests.worker.plugin_hikari_helpers")
    )
    replica = app.WorkerApp(settings)
    try:
        await replica.start()
        async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            discord.send_message(int(channel["id"]), user, "!whoami")

            def replies() -> list[str]:
                return [c.body["content"] for c in discord.records.rest if c.method == "POST"]

            await discord.wait_for(lambda: len(replies()) == 1, what="the bot's answer")
    finally:
        await replica.close()
    assert replies() == [f"carol in #{channel['name']} of tearoom, roles: @everyone, regular"]
