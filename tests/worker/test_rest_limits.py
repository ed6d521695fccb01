"""REST rate limits shared by replicas, on a fake clock: the emulator enforces Discord's limits
in the same fake time, and each test asserts exactly when every request went out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import typing

import hikari
import pytest
import redis.asyncio as aioredis
from hikari.internal import routes

from playground.discord import emulator, ratelimit
from shared import clock as clock_module
from shared import keys
from worker import bot as bot_module
from worker import rest_limits
from worker.rest_limits import shared_buckets

if typing.TYPE_CHECKING:
    import collections.abc

    from tests.conftest import EmulatorFactory

MESSAGES: typing.Final = "POST /channels/{channel_id}/messages"
#: The fake clock starts 1 minute into an invalid-request window.
START_MS: typing.Final = 2_900 * rest_limits.INVALID_WINDOW_MS + 60_000


@pytest.fixture
async def clock() -> collections.abc.AsyncIterator[clock_module.FakeClock]:
    async with clock_module.FakeClock(start_ms=START_MS) as fake:
        yield fake


class Replicas:
    """REST clients as separate worker replicas have them: nothing shared but Redis."""

    def __init__(
        self,
        discord: emulator.DiscordEmulator,
        redis: aioredis.Redis,
        namespace: str,
        clock: clock_module.Clock | None,
    ) -> None:
        self.discord = discord
        self.redis = redis
        self.namespace = namespace
        self.clock = clock
        self.clients: list[rest_limits.LimitedRESTClient] = []

    def open(
        self, count: int = 1, *, global_limit: int = 50, limiter: str = "redis"
    ) -> list[rest_limits.LimitedRESTClient]:
        made = []
        for _ in range(count):
            client = rest_limits.build_client(
                token=self.discord.token,
                api_url=self.discord.api_url,
                entity_factory=bot_module.Bot().entity_factory,
                limiter=limiter,
                global_limit=global_limit,
                redis=self.redis,
                redis_keys=keys.RedisKeys(self.namespace, "main"),
                clock=self.clock,
            )
            client.start()
            made.append(client)
        self.clients += made
        return made

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def manager(client: rest_limits.LimitedRESTClient) -> rest_limits.SharedBucketManager:
    found = client.shared_limiter
    assert found is not None
    return found


@contextlib.asynccontextmanager
async def replicas(
    clock: clock_module.FakeClock, redis: aioredis.Redis, namespace: str, **limits: typing.Any
) -> collections.abc.AsyncIterator[tuple[Replicas, list[int]]]:
    """An emulated Discord counting its limits on ``clock``, and replicas on the same clock."""
    options = ratelimit.RateLimitOptions(**limits)
    async with emulator.DiscordEmulator(
        rate_limits=options, rate_limit_clock=clock.monotonic
    ) as discord:
        guild = discord.add_guild("g", channels=20)
        channels = [int(c["id"]) for c in discord.channels_of(int(guild["id"]))]
        group = Replicas(discord, redis, namespace, clock)
        try:
            yield group, channels
        finally:
            await group.close()


async def answered_after(clock: clock_module.FakeClock, call: typing.Awaitable[object]) -> int:
    """Fake ms until ``call`` was answered: a request's HTTP round trip takes no fake time, so
    this is when it went out."""
    start = clock.now_ms()
    await call
    return clock.now_ms() - start


async def sent_at(
    clock: clock_module.FakeClock, calls: collections.abc.Iterable[typing.Awaitable[object]]
) -> list[int]:
    """Run ``calls`` at once, each a watched task; the fake ms at which each was answered."""
    return await asyncio.gather(*(clock.spawn(answered_after(clock, call)) for call in calls))


async def until(clock: clock_module.FakeClock, done: typing.Callable[[], bool]) -> None:
    """Wait in fake time (a millisecond at a time) until ``done()``: every other watched task
    has got as far as it can before it needs time to pass."""
    while not done():
        await clock.sleep(0.001)


def paced(start_ms: int, count: int, per_second: float) -> list[int]:
    """The global pace's slots (ms from ``start_ms``): theoretical arrival times advanced by
    ``1000 / per_second`` from the absolute ``start_ms``, in floating point as the script does."""
    interval = 1000 / per_second
    slots, at = [], float(start_ms)
    for _ in range(count):
        slots.append(math.floor(at) - start_ms)
        at += interval
    return slots


def posts(discord: emulator.DiscordEmulator) -> list[tuple[int, int | None]]:
    return [(c.status, c.remaining) for c in discord.records.rest if c.method == "POST"]


async def test_three_replicas_on_one_route_get_no_429_and_use_the_whole_limit(
    clock: clock_module.FakeClock, redis_client: aioredis.Redis, namespace: str
) -> None:
    async with replicas(clock, redis_client, namespace, route_limits={MESSAGES: (10, 1.0)}) as (
        group,
        channels,
    ):
        clients = group.open(3)
        times = await sent_at(
            clock, (clients[i % 3].create_message(channels[0], f"m{i}") for i in range(40))
        )
    assert group.discord.records.rate_limited == []
    # The whole limit used: four full windows, each opened with 9 remaining and emptied to 0.
    assert posts(group.discord) == [(200, left) for left in range(9, -1, -1)] * 4
    # A window opens once the limiter's reset (1000 ms + 30 ms margin) has passed, plus one
    # more margin; inside it requests are paced by the global limit (47.5/s: 21.05 ms).
    opened = [0, 1060, 2090, 3120]
    assert sorted(times) == [at + math.floor(j * 1000 / 47.5) for at in opened for j in range(10)]
    # Every request but the first (alone, to learn the bucket) waited for its slot.
    assert sum(manager(c).stats["waits"] for c in clients) == 39


async def test_three_replicas_keep_under_the_global_limit(
    clock: clock_module.FakeClock, redis_client: aioredis.Redis, namespace: str
) -> None:
    async with replicas(
        clock, redis_client, namespace, global_limit=20, default_route_limit=(100, 1.0)
    ) as (group, channels):
        clients = group.open(3, global_limit=20)
        start = clock.now_ms()
        # Spread over channels (route buckets are per channel): only the global limit binds.
        times = await sent_at(
            clock,
            (clients[i % 3].create_message(channels[i % 20], f"m{i}") for i in range(60)),
        )
    assert group.discord.records.rate_limited == []
    assert [status for status, _ in posts(group.discord)] == [200] * 60
    # Paced evenly at 95% of 20/s, one every 52.63 ms: the last goes out 3.105 s after the first.
    assert sorted(times) == paced(start, 60, 20 * rest_limits.GLOBAL_PACE)
    assert max(times) == 3105


async def test_a_global_429_pauses_every_replica(
    clock: clock_module.FakeClock, redis_client: aioredis.Redis, namespace: str
) -> None:
    async with replicas(clock, redis_client, namespace) as (group, channels):
        first, second, third = group.open(3)
        await sent_at(clock, [first.create_message(channels[0], "warm-up")])
        group.discord.limiter.block_global(3.0)
        start = clock.now_ms()
        hit = clock.spawn(answered_after(clock, first.create_message(channels[0], "hit")))
        await until(clock, lambda: len(group.discord.records.rate_limited) == 1)
        asked_at = clock.now_ms() - start
        others = await sent_at(
            clock,
            [second.create_message(channels[1], "b"), third.create_message(channels[2], "c")],
        )
        hit_at = await hit
    # "hit" went out in the global pace's next slot (21 ms), got the 429 (2.979 s left), and
    # the others asked a millisecond later, while the pause lasted.
    assert asked_at == 22
    assert [c.status for c in group.discord.records.rate_limited] == [429]
    assert manager(first).stats["global_429"] == 1
    assert manager(second).stats["global_429"] == manager(third).stats["global_429"] == 0
    # Nobody before the pause's end (21 + 2979 + 30 ms margin), then one per global slot.
    assert hit_at == 3030
    assert sorted(asked_at + at for at in others) == [3051, 3072]


async def test_a_shared_route_429_makes_every_replica_wait_for_that_route(
    clock: clock_module.FakeClock, redis_client: aioredis.Redis, namespace: str
) -> None:
    async with replicas(clock, redis_client, namespace) as (group, channels):
        first, second = group.open(2)
        await sent_at(clock, [first.create_message(channels[0], "learn the bucket")])
        group.discord.limiter.block_route(MESSAGES, 3.0, scope="shared")
        (hit_at,) = await sent_at(clock, [first.create_message(channels[0], "hit")])
        (after_at,) = await sent_at(clock, [second.create_message(channels[0], "after")])
    assert [c.status for c in group.discord.records.rate_limited] == [429]
    assert manager(first).stats["route_429"] == 1
    # "hit" went out at 21 ms (the global pace) into the 429; the bucket (5 per 5 s, opened at
    # 0) was emptied for everyone until its reset at 5 s + 30 ms margin, and the retry went
    # one margin after that. The other replica, asking then, went in the next global slot.
    assert hit_at == 5060
    assert after_at == 21
    # The emulator's window had reset: nothing was wasted, nothing overran.
    assert posts(group.discord) == [(200, 4), (429, 4), (200, 4), (200, 3)]


def test_interaction_endpoints_and_token_less_requests_skip_the_global_limit() -> None:
    callback = routes.POST_INTERACTION_RESPONSE.compile(interaction=1, token="t")
    followup = routes.POST_WEBHOOK_WITH_TOKEN.compile(webhook=1, token="t")
    edit = routes.PATCH_INTERACTION_RESPONSE.compile(webhook=1, token="t")
    message = routes.POST_CHANNEL_MESSAGES.compile(channel=1)
    assert shared_buckets.is_exempt(callback, "Bot x")
    assert shared_buckets.is_exempt(followup, None)
    assert shared_buckets.is_exempt(edit, "Bot x")
    assert not shared_buckets.is_exempt(message, "Bot x")


async def test_redis_unavailable_falls_back_to_per_process_limits_with_a_warning(
    make_emulator: EmulatorFactory, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """hikari's own limiter takes over; it keeps to the real clock, and so does this emulator."""
    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    discord = await make_emulator(
        rate_limits=ratelimit.RateLimitOptions(route_limits={MESSAGES: (5, 1.0)})
    )
    guild = discord.add_guild("g")
    channel = int(discord.channels_of(int(guild["id"]))[0]["id"])
    group = Replicas(discord, unreachable, namespace, None)
    caplog.set_level(logging.WARNING, logger="shardline.worker.rest")
    try:
        (client,) = group.open(1)
        await asyncio.gather(*(client.create_message(channel, f"m{i}") for i in range(8)))
    finally:
        await group.close()
        await unreachable.aclose()
    assert len([c for c in discord.records.rest if c.method == "POST"]) == 8
    warnings = [r for r in caplog.records if "per process" in r.getMessage()]
    assert len(warnings) == 1
    assert manager(client).stats["fallbacks"] >= 8  # every reservation, and learns
    assert not manager(client).shared


async def test_behind_a_rest_proxy_no_limiter_runs_in_the_process(
    clock: clock_module.FakeClock, redis_client: aioredis.Redis, namespace: str
) -> None:
    async with replicas(clock, redis_client, namespace) as (group, channels):
        (client,) = group.open(1, limiter="off")
        assert isinstance(client._bucket_manager, rest_limits.DisabledBucketManager)
        assert client.shared_limiter is None
        await sent_at(clock, [client.create_message(channels[0], "through the proxy")])
    assert posts(group.discord) == [(200, 4)]
    assert await redis_client.keys(f"{namespace}:*") == []


async def test_requests_one_after_another_use_every_window_in_full(
    clock: clock_module.FakeClock, redis_client: aioredis.Redis, namespace: str
) -> None:
    """Requests promised the next window are counted in it when its first response arrives
    (a learn that did not roll the window once pushed each to a window of its own)."""
    async with replicas(clock, redis_client, namespace, route_limits={MESSAGES: (5, 2.0)}) as (
        group,
        channels,
    ):
        (client,) = group.open(1)
        start = clock.now_ms()
        times: list[int] = []

        async def one_after_another() -> None:
            for i in range(12):
                await client.create_message(channels[0], f"m{i}")
                times.append(clock.now_ms() - start)

        await clock.spawn(one_after_another())
    assert group.discord.records.rate_limited == []
    # Windows opened at 0, 2.06 and 4.12 s (reset, margin, margin) and filled 5, 5, 2.
    assert posts(group.discord) == [(200, left) for left in [4, 3, 2, 1, 0] * 2 + [4, 3]]
    assert times == [0, 21, 42, 63, 84, 2060, 2081, 2102, 2123, 2144, 4120, 4141]


async def test_invalid_requests_are_counted_and_stop_traffic_before_a_ban(
    clock: clock_module.FakeClock, redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    window = clock.now_ms() // rest_limits.INVALID_WINDOW_MS
    async with replicas(clock, redis_client, namespace) as (group, channels):
        (client,) = group.open(1)
        other = group.discord.add_user("other")
        theirs = group.discord.send_message(channels[0], other, "not yours")

        async def edit_theirs() -> None:
            with contextlib.suppress(hikari.ForbiddenError):  # 403: counts toward the budget
                await client.edit_message(channels[0], int(theirs["id"]), "edited")

        await clock.spawn(edit_theirs())
        assert int(await redis_client.get(redis_keys.rest_invalid(window)) or 0) == 1
        assert manager(client).stats["invalid"] == 1
        # Most of the budget spent (by this fleet): ordinary requests wait, nothing is sent.
        budget = rest_limits.INVALID_BUDGET
        await redis_client.set(redis_keys.rest_invalid(window), budget * 8 // 10)
        sent = len(group.discord.records.rest)
        start = clock.now_ms()
        held_back = clock.spawn(answered_after(clock, client.create_message(channels[0], "held")))
        await clock.sleep(4.5)
        assert len(group.discord.records.rest) == sent
        assert manager(client).stats["blocked"] == 5  # asked at 0, 1, 2, 3 and 4 s
        # Interaction responses are not held back: they are what users are waiting for.
        callback = routes.POST_INTERACTION_RESPONSE.compile(interaction=1, token="t")
        asked = clock.now_ms()
        held = await clock.spawn(manager(client).reserve(callback, "Bot x"))
        assert held is not None
        assert clock.now_ms() == asked
        # The window slides (the count drops): the held request goes at its next ask, at 5 s.
        await redis_client.set(redis_keys.rest_invalid(window), budget // 10)
        answered = await held_back
    assert answered == 5000
    assert clock.now_ms() - start == 5000
    assert manager(client).stats["blocked"] == 5


async def test_requests_that_wake_late_for_their_slot_take_new_ones_instead_of_bunching(
    clock: clock_module.FakeClock, redis_client: aioredis.Redis, namespace: str
) -> None:
    """A busy event loop wakes paced requests late, all at once; Discord counts its global
    limit in fixed windows, so they must not go out together."""
    async with replicas(
        clock, redis_client, namespace, global_limit=5, default_route_limit=(100, 1.0)
    ) as (group, channels):
        (client,) = group.open(1, global_limit=5)
        # Every route bucket learned: only the global pace (5/s at 95%: 210.5 ms) binds.
        await sent_at(clock, [client.create_message(c, "warm-up") for c in channels[:4]])
        await clock.sleep(1.1)  # a fresh global window
        before = len(group.discord.records.rest)
        pending = [
            clock.spawn(answered_after(clock, client.create_message(c, "paced")))
            for c in channels[:4]
        ]
        # All four hold slots 210 ms apart: the first goes, three wait.
        await until(clock, lambda: manager(client).stats["waits"] == 3 + 3)
        clock.advance(1.0)  # the stall under test: the loop wakes every waiter a second late
        times = await asyncio.gather(*pending)
    assert manager(client).stats["late"] == 3
    assert group.discord.records.rate_limited == []
    assert [c.status for c in group.discord.records.rest[before:]] == [200] * 4
    # The late ones took new slots from the stall's end (1001 ms), paced again, not a bunch.
    assert sorted(times) == [0, 1001, 1211, 1422]
