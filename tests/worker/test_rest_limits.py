"""REST rate limits shared by replicas: the emulator enforces Discord's limits and counts 429s."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import typing

import hikari
import pytest
import redis.asyncio as aioredis

from playground.discord import ratelimit
from shared import keys
from worker import bot as bot_module
from worker import rest_limits

if typing.TYPE_CHECKING:
    from playground.discord import emulator
    from tests.conftest import EmulatorFactory

MESSAGES: typing.Final = "POST /channels/{channel_id}/messages"


def paced_bound(ideal: float, windows: int, window: float = 1.0) -> float:
    """The longest a paced run may take: each wait for a new window may overrun by scheduling
    jitter on this 2-core machine shared with the servers (up to 80% of a window), never by a
    whole window, which is what a limiter that waited one window too many would cost."""
    return ideal + 0.8 * window * windows


class Replicas:
    """REST clients as separate worker replicas have them: nothing shared but Redis."""

    def __init__(
        self, discord: emulator.DiscordEmulator, redis: aioredis.Redis, namespace: str
    ) -> None:
        self.discord = discord
        self.redis = redis
        self.namespace = namespace
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
            )
            client.start()
            made.append(client)
        self.clients += made
        return made

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def manager(client: rest_limits.LimitedRESTClient) -> rest_limits.SharedBucketManager:
    found = client._bucket_manager
    assert isinstance(found, rest_limits.SharedBucketManager)
    return found


async def make(
    make_emulator: EmulatorFactory, redis: aioredis.Redis, namespace: str, **limits: typing.Any
) -> tuple[Replicas, list[int]]:
    discord = await make_emulator(rate_limits=ratelimit.RateLimitOptions(**limits))
    guild = discord.add_guild("g", channels=20)
    channels = [int(c["id"]) for c in discord.channels_of(int(guild["id"]))]
    return Replicas(discord, redis, namespace), channels


async def test_three_replicas_on_one_route_get_no_429_and_use_the_whole_limit(
    make_emulator: EmulatorFactory, redis_client: aioredis.Redis, namespace: str
) -> None:
    group, channels = await make(
        make_emulator, redis_client, namespace, route_limits={MESSAGES: (10, 1.0)}
    )
    try:
        clients = group.open(3)
        started = time.monotonic()
        await asyncio.gather(
            *(clients[i % 3].create_message(channels[0], f"m{i}") for i in range(40))
        )
        elapsed = time.monotonic() - started
    finally:
        await group.close()
    assert group.discord.records.rate_limited == []
    posts = [c for c in group.discord.records.rest if c.method == "POST"]
    assert len(posts) == 40
    # The whole limit used: 40 requests at 10 per window fill exactly four windows, each
    # opened by a request the emulator answered with 9 remaining and emptied to 0.
    remaining = [c.remaining for c in posts]
    assert remaining.count(9) == 4, remaining
    assert remaining.count(0) == 4, remaining
    # The last window starts 3 s after the first (plus the limiter's margins).
    assert 3.0 <= elapsed < paced_bound(3.0, 3), elapsed


async def test_three_replicas_keep_under_the_global_limit(
    make_emulator: EmulatorFactory, redis_client: aioredis.Redis, namespace: str
) -> None:
    group, channels = await make(
        make_emulator, redis_client, namespace, global_limit=20, default_route_limit=(100, 1.0)
    )
    assert len(channels) >= 3
    try:
        clients = group.open(3, global_limit=20)
        started = time.monotonic()
        # Spread over channels (route buckets are per channel): only the global limit binds.
        await asyncio.gather(
            *(
                clients[i % 3].create_message(channels[i % len(channels)], f"m{i}")
                for i in range(60)
            )
        )
        elapsed = time.monotonic() - started
    finally:
        await group.close()
    assert group.discord.records.rate_limited == []
    # 60 requests at 20/s: the last may go out 2.95 s after the first (paced at 95%).
    assert 2.5 < elapsed < paced_bound(60 / 20, 3), elapsed


async def test_a_global_429_pauses_every_replica(
    make_emulator: EmulatorFactory, redis_client: aioredis.Redis, namespace: str
) -> None:
    group, channels = await make(make_emulator, redis_client, namespace)
    try:
        first, second, third = group.open(3)
        await first.create_message(channels[0], "warm-up")
        # Long enough that the others surely ask while it lasts, however loaded the machine.
        group.discord.limiter.block_global(3.0)
        started = time.monotonic()
        pending = asyncio.ensure_future(first.create_message(channels[0], "hit"))
        await group.discord.wait_for(lambda: len(group.discord.records.rate_limited) == 1)
        pause_key = keys.RedisKeys(namespace, "main").rest_global_pause()
        deadline = time.monotonic() + 10
        while not await redis_client.exists(pause_key):
            assert time.monotonic() < deadline, "the pause was never shared"
            await asyncio.sleep(0.01)
        await asyncio.gather(
            second.create_message(channels[1], "b"), third.create_message(channels[2], "c")
        )
        await pending
        elapsed = time.monotonic() - started
    finally:
        await group.close()
    assert len(group.discord.records.rate_limited) == 1  # the others waited instead
    assert manager(first).stats["global_429"] == 1
    assert elapsed >= 2.9


async def test_a_shared_route_429_makes_every_replica_wait_for_that_route(
    make_emulator: EmulatorFactory, redis_client: aioredis.Redis, namespace: str
) -> None:
    group, channels = await make(make_emulator, redis_client, namespace)
    try:
        first, second = group.open(2)
        await first.create_message(channels[0], "learn the bucket")
        group.discord.limiter.block_route(MESSAGES, 3.0, scope="shared")
        started = time.monotonic()
        await first.create_message(channels[0], "hit")  # 429 shared, then waits, then sent
        await second.create_message(channels[0], "after")
        elapsed = time.monotonic() - started
    finally:
        await group.close()
    assert [c.status for c in group.discord.records.rate_limited] == [429]
    assert elapsed >= 2.9
    assert manager(first).stats["route_429"] == 1


def test_interaction_endpoints_and_token_less_requests_skip_the_global_limit() -> None:
    routes = rest_limits.rest.routes
    callback = routes.POST_INTERACTION_RESPONSE.compile(interaction=1, token="t")
    followup = routes.POST_WEBHOOK_WITH_TOKEN.compile(webhook=1, token="t")
    edit = routes.PATCH_INTERACTION_RESPONSE.compile(webhook=1, token="t")
    message = routes.POST_CHANNEL_MESSAGES.compile(channel=1)
    assert rest_limits._exempt(callback, "Bot x")
    assert rest_limits._exempt(followup, None)
    assert rest_limits._exempt(edit, "Bot x")
    assert not rest_limits._exempt(message, "Bot x")


async def test_redis_unavailable_falls_back_to_per_process_limits_with_a_warning(
    make_emulator: EmulatorFactory, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    group, channels = await make(
        make_emulator, unreachable, namespace, route_limits={MESSAGES: (5, 1.0)}
    )
    caplog.set_level(logging.WARNING, logger="shardline.worker.rest")
    try:
        (client,) = group.open(1)
        await asyncio.gather(*(client.create_message(channels[0], f"m{i}") for i in range(8)))
    finally:
        await group.close()
        await unreachable.aclose()
    assert len([c for c in group.discord.records.rest if c.method == "POST"]) == 8
    warnings = [r for r in caplog.records if "per process" in r.getMessage()]
    assert len(warnings) == 1


async def test_behind_a_rest_proxy_no_limiter_runs_in_the_process(
    make_emulator: EmulatorFactory, redis_client: aioredis.Redis, namespace: str
) -> None:
    group, channels = await make(make_emulator, redis_client, namespace)
    try:
        (client,) = group.open(1, limiter="off")
        assert isinstance(
            client._bucket_manager,
            rest_limits.DisabledBucketManager,
        )
        await client.create_message(channels[0], "through the proxy")
    finally:
        await group.close()
    assert await redis_client.keys(f"{namespace}:*") == []


async def test_requests_one_after_another_use_every_window_in_full(
    make_emulator: EmulatorFactory, redis_client: aioredis.Redis, namespace: str
) -> None:
    """Requests promised the next window are counted in it when its first response arrives
    (a learn that did not roll the window once pushed each to a window of its own)."""
    group, channels = await make(
        make_emulator, redis_client, namespace, route_limits={MESSAGES: (5, 2.0)}
    )
    try:
        (client,) = group.open(1)
        started = time.monotonic()
        for i in range(12):
            await client.create_message(channels[0], f"m{i}")
        elapsed = time.monotonic() - started
    finally:
        await group.close()
    assert group.discord.records.rate_limited == []
    # Windows opened at 0, 2 and 4 s and filled 5, 5, 2: none given to a request of its own.
    remaining = [c.remaining for c in group.discord.records.rest if c.method == "POST"]
    assert remaining == [4, 3, 2, 1, 0] * 2 + [4, 3], remaining
    assert elapsed < paced_bound(4.0, 2, window=2.0), elapsed


async def test_invalid_requests_are_counted_and_stop_traffic_before_a_ban(
    make_emulator: EmulatorFactory, redis_client: aioredis.Redis, namespace: str
) -> None:
    group, channels = await make(make_emulator, redis_client, namespace)
    redis_keys = keys.RedisKeys(namespace, "main")
    # The budget is counted in fixed wall-clock windows: start well inside one.
    left_ms = (
        rest_limits.INVALID_WINDOW_MS - int(time.time() * 1000) % rest_limits.INVALID_WINDOW_MS
    )
    if left_ms < 10_000:
        await asyncio.sleep(left_ms / 1000 + 0.1)
    try:
        (client,) = group.open(1)
        other = group.discord.add_user("other")
        theirs = group.discord.send_message(channels[0], other, "not yours")
        with contextlib.suppress(hikari.ForbiddenError):  # 403: counts toward the budget
            await client.edit_message(channels[0], int(theirs["id"]), "edited")
        window = int(time.time() * 1000) // rest_limits.INVALID_WINDOW_MS
        assert int(await redis_client.get(redis_keys.rest_invalid(window)) or 0) == 1
        # Most of the budget spent (by this fleet): ordinary requests wait, nothing is sent.
        await redis_client.set(
            redis_keys.rest_invalid(window), rest_limits.INVALID_BUDGET * 8 // 10
        )
        sent = len(group.discord.records.rest)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.create_message(channels[0], "held back"), 1.5)
        assert len(group.discord.records.rest) == sent
        assert manager(client).stats["blocked"] >= 1
        # Interaction responses are not held back: they are what users are waiting for.
        callback = rest_limits.rest.routes.POST_INTERACTION_RESPONSE.compile(
            interaction=1, token="t"
        )
        held = await asyncio.wait_for(manager(client)._reserve(callback, "Bot x"), 1.0)
        assert held is not None
    finally:
        await group.close()


async def test_requests_that_wake_late_for_their_slot_take_new_ones_instead_of_bunching(
    make_emulator: EmulatorFactory, redis_client: aioredis.Redis, namespace: str
) -> None:
    """A busy event loop wakes paced requests late, all at once; Discord counts its global
    limit in fixed windows, so they must not go out together."""
    group, channels = await make(
        make_emulator, redis_client, namespace, global_limit=5, default_route_limit=(100, 1.0)
    )
    try:
        (client,) = group.open(1, global_limit=5)
        for channel_id in channels[:4]:  # every route bucket learned: only the global pace binds
            await client.create_message(channel_id, "warm-up")
        await asyncio.sleep(1.1)  # a fresh global window
        before = len(group.discord.records.rest)
        waited = manager(client).stats["waits"]
        pending = [
            asyncio.ensure_future(client.create_message(channel_id, "paced"))
            for channel_id in channels[:4]
        ]
        # All four hold slots about 210 ms apart (5/s at 95%): the first goes, three wait.
        await group.discord.wait_for(lambda: manager(client).stats["waits"] == waited + 3)
        time.sleep(1.0)  # noqa: ASYNC251 - the stall under test: the loop is blocked
        await asyncio.gather(*pending)
    finally:
        await group.close()
    assert manager(client).stats["late"] >= 2, manager(client).stats
    sent = sorted(c.at for c in group.discord.records.rest[before:] if c.method == "POST")
    assert len(sent) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent[1:])]
    assert min(gaps) > 0.1, gaps  # the late ones are paced again, not sent in a bunch
    assert group.discord.records.rate_limited == []
