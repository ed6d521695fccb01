"""The session-start ledger on a fake clock, against the real Redis (``gateway.identify``).

Discord's budget is ``session_start_limit`` of ``GET /gateway/bot`` (discord-api-docs, Gateway,
"Get Gateway Bot" / "Session Start Limit Object": ``total``, ``remaining``, ``reset_after`` in
milliseconds); exhausting it resets the bot's token. Here Discord's side is :class:`Discord`,
a budget whose window runs on the same fake clock as the ledger, so every wait is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import typing

import pytest
import redis.asyncio as aioredis
from redis import backoff
from redis.asyncio import retry

from gateway import discord_api, identify
from shared import clock as clock_module
from shared import fleet, keys, status
from tests.cli.running import shardline

if typing.TYPE_CHECKING:
    import collections.abc

    from playground.discord import emulator
    from tests.conftest import EmulatorFactory
    from tests.gateway.conftest import Stack

RESERVE: typing.Final = identify.SESSION_START_RESERVE
#: The ledger asks again this long after Discord's reset (its clock is not ours).
MARGIN_MS: typing.Final = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    total: int
    remaining: int
    reset_after: float


@dataclasses.dataclass
class Discord:
    """Discord's session start budget: ``window`` seconds long, on the fake clock."""

    clock: clock_module.FakeClock
    total: int = 1000
    remaining: int = 1000
    window: float = 60.0
    reset_at_ms: int = 0
    #: ``GET /gateway/bot`` calls, and how many of the next ones fail (Discord unreachable).
    asked: int = 0
    failing: int = 0
    #: Run at each call before answering (a test looks at Redis then).
    probe: typing.Callable[[], typing.Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.reset_at_ms = self.clock.now_ms() + int(self.window * 1000)

    def _roll(self) -> None:
        if self.clock.now_ms() >= self.reset_at_ms:
            self.remaining = self.total
            self.reset_at_ms = self.clock.now_ms() + int(self.window * 1000)

    async def gateway_bot(self) -> Limit:
        self.asked += 1
        if self.probe is not None:
            await self.probe()
        if self.failing:
            self.failing -= 1
            raise discord_api.DiscordApiError("cannot reach DISCORD_API_URL: ClientConnectorError")
        self._roll()
        return Limit(self.total, self.remaining, (self.reset_at_ms - self.clock.now_ms()) / 1000)

    def identify(self) -> None:
        """An IDENTIFY Discord accepts: one start spent (a token reset when none remains)."""
        self._roll()
        assert self.remaining > 0, "session starts exhausted: Discord resets the token"
        self.remaining -= 1


@pytest.fixture
async def clock() -> collections.abc.AsyncIterator[clock_module.FakeClock]:
    async with clock_module.FakeClock() as fake:
        yield fake


@pytest.fixture
def redis_keys(namespace: str) -> keys.RedisKeys:
    return keys.RedisKeys(namespace, "main")


def make_ledger(
    redis: aioredis.Redis, redis_keys: keys.RedisKeys, discord: Discord
) -> identify.SessionStartLedger:
    return identify.SessionStartLedger(
        redis, redis_keys, fetch=discord.gateway_bot, clock=discord.clock
    )


async def test_an_expired_ledger_is_asked_of_discord_not_refused(
    redis_client: aioredis.Redis, redis_keys: keys.RedisKeys, clock: clock_module.FakeClock
) -> None:
    discord = Discord(clock, window=60.0)
    ledger = make_ledger(redis_client, redis_keys, discord)
    await ledger.refresh()  # what the gateway does at start: GET /gateway/bot
    await clock.sleep(61)  # the gateway ran past its window; Redis keeps the key a while
    discord.identify()  # Discord's new window, with a start another process spent
    assert await clock.spawn(ledger.spend()) == 998
    assert discord.asked == 2
    budget = ledger.budget()
    assert budget is not None
    assert (budget.total, budget.remaining, budget.reset_after) == (1000, 998, 60.0)


async def test_a_lost_ledger_is_refreshed_and_never_recreated_without_a_ttl(
    redis_client: aioredis.Redis, redis_keys: keys.RedisKeys, clock: clock_module.FakeClock
) -> None:
    """Redis lost the key (restart without persistence, eviction, FLUSHALL) while Discord
    cannot be reached: the spend waits and retries, and no decrement creates the key."""
    discord = Discord(clock, remaining=700)
    ledger = make_ledger(redis_client, redis_keys, discord)
    await ledger.refresh()  # what the gateway does at start: GET /gateway/bot
    key = redis_keys.session_start_ledger()
    await redis_client.delete(key)
    discord.failing = 3
    found: list[int] = []

    async def probe() -> None:
        found.append(await redis_client.exists(key))

    discord.probe = probe
    started = clock.monotonic()
    assert await clock.spawn(ledger.spend()) == 699
    discord.identify()
    assert found == [0, 0, 0, 0]  # three failed reads, then one that answered
    assert clock.monotonic() - started == 1 + 2 + 4  # back-off between Discord's failures
    assert await redis_client.pttl(key) > 0
    assert await ledger.remaining() == 699
    # A key as the old ledger left it (remaining -1, no TTL, no window) is unknown, too.
    await redis_client.delete(key)
    await redis_client.hset(key, "remaining", -1)
    assert await clock.spawn(ledger.spend()) == 698
    assert await redis_client.pttl(key) > 0
    # Lost while nobody spends: the gateway's periodic check asks Discord again.
    await redis_client.delete(key)
    asked = discord.asked
    await ledger.refresh_if_due()
    assert discord.asked == asked + 1
    assert await redis_client.pttl(key) > 0


async def test_too_few_starts_wait_for_discords_reset_then_identify(
    redis_client: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    clock: clock_module.FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    discord = Discord(clock, remaining=RESERVE, window=3600.0)
    ledger = make_ledger(redis_client, redis_keys, discord)
    await ledger.refresh()  # what the gateway does at start: GET /gateway/bot
    reset_at = discord.reset_at_ms
    identified: list[tuple[int, int]] = []

    async def shard(shard_id: int) -> None:
        await ledger.spend()
        discord.identify()
        identified.append((shard_id, clock.now_ms()))

    seen: list[float | None] = []

    async def operator() -> None:
        await clock.sleep(1800)
        seen.append(ledger.waiting_until())

    caplog.set_level(logging.INFO, logger="shardline.gateway.identify")
    await asyncio.gather(*(clock.spawn(c) for c in (shard(0), shard(1), shard(2), operator())))
    # Nobody spent the reserve; every shard identified once Discord reset, not before.
    assert sorted(s for s, _ in identified) == [0, 1, 2]
    assert {at for _, at in identified} == {reset_at + MARGIN_MS}
    assert seen == [reset_at / 1000]
    assert ledger.waiting_until() is None
    assert discord.remaining == discord.total - 3
    assert await ledger.remaining() == discord.total - 3
    waits = [r for r in caplog.records if "too few session starts" in r.getMessage()]
    assert len(waits) == 1
    assert "came; identifying again" in caplog.text
    # Asked Discord at start and once after the reset, for all three shards together.
    assert discord.asked == 2


async def test_a_refresh_in_the_same_window_keeps_the_pools_own_count(
    redis_url: str, redis_keys: keys.RedisKeys, clock: clock_module.FakeClock
) -> None:
    """Two gateways: starts one spent that Discord has not counted yet are not given back
    when the other reads ``/gateway/bot``; a new window replaces the count."""
    discord = Discord(clock, window=60.0)
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        first, second = (make_ledger(c, redis_keys, discord) for c in clients)
        await first.refresh()
        for _ in range(3):
            await clock.spawn(first.spend())
        await second.refresh()  # Discord still says 1000
        assert await second.remaining() == 997
        await clock.sleep(60)
        await second.refresh_if_due()
        assert await first.remaining() == 1000
    finally:
        for client in clients:
            await client.aclose()


async def test_without_redis_the_gateway_counts_alone(
    redis_keys: keys.RedisKeys, clock: clock_module.FakeClock
) -> None:
    discord = Discord(clock, remaining=RESERVE + 2)
    # Refused at once, and not retried: the test is about what the ledger does then.
    unreachable = aioredis.Redis(
        host="127.0.0.1", port=1, retry=retry.Retry(backoff.NoBackoff(), 0)
    )
    try:
        ledger = make_ledger(unreachable, redis_keys, discord)
        await ledger.refresh()  # what the gateway does at start: GET /gateway/bot
        assert await clock.spawn(ledger.spend()) == -1
        assert await clock.spawn(ledger.spend()) == -1
        budget = ledger.budget()
        assert budget is not None
        assert budget.remaining == RESERVE
        # The reserve holds without Redis too: the next one waits for the reset.
        started = clock.now_ms()
        await clock.spawn(ledger.spend())
        assert clock.now_ms() - started == 60_000 + MARGIN_MS
    finally:
        await unreachable.aclose()


# --- end to end: a gateway against the emulator, its session-start window shortened --------


def channel_of(discord: emulator.DiscordEmulator) -> int:
    guild = discord.add_guild("g")
    return int(discord.channels_of(int(guild["id"]))[0]["id"])


def accepted(discord: emulator.DiscordEmulator) -> list[float]:
    return [r.at for r in discord.records.identifies if r.accepted]


@pytest.mark.parametrize("ledger", ["window passed", "key lost"])
async def test_a_shard_told_to_start_over_identifies_again(
    make_emulator: EmulatorFactory, stack: Stack, caplog: pytest.LogCaptureFixture, ledger: str
) -> None:
    """The gateway ran past its session-start window (3 s here, a day at Discord), or Redis
    lost the ledger (restart without persistence, eviction); Discord then invalidates the
    shard's session (op 9, ``d: false``). It IDENTIFYs again and events flow: the unknown
    ledger is asked of ``/gateway/bot``, not counted from -1."""
    window = 3.0
    stack.discord = discord = await make_emulator(session_start_reset_after=window)
    channel_id = channel_of(discord)
    user = discord.add_user("u")
    sink = await stack.listen(["MESSAGE_CREATE"])
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0"):
        await discord.wait_for(lambda: discord.connected_shards() == [0], what="shard 0")
        if ledger == "window passed":
            await asyncio.sleep(window + 0.5)  # the ledger's window ended (its key is kept)
        else:
            assert await stack.redis.delete(stack.keys.session_start_ledger()) == 1
        told = time.monotonic()
        discord.force_invalid_session(0, resumable=False)
        await discord.wait_for(lambda: len(accepted(discord)) == 2, timeout=30, what="IDENTIFY")
        await discord.wait_for(lambda: discord.connected_shards() == [0], what="shard 0 back")
        recovered = time.monotonic() - told
        discord.send_message(channel_id, user, "after")
        await discord.wait_for(lambda: sink.of("MESSAGE_CREATE"), what="an event after")
    assert discord.records.token_resets == 0
    assert not any(r.levelno >= logging.ERROR for r in caplog.records), caplog.text
    # The bucket's identify window (5 s from the first READY) bounds it, plus a reconnect.
    assert recovered < 15, recovered
    print(f"{ledger}: re-identified {recovered:.1f} s after INVALID_SESSION(false)")  # noqa: T201


async def test_a_gateway_with_too_few_starts_waits_for_the_reset_and_says_so(
    make_emulator: EmulatorFactory,
    stack: Stack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the reserve left: the gateway waits (its status and ``shardline status`` say how
    long) instead of spending it or refusing for good, and IDENTIFYs after Discord's reset."""
    window = 7.0  # a status is written every 5 s: one falls within the wait
    stack.discord = discord = await make_emulator(
        session_start_remaining=RESERVE, session_start_reset_after=window
    )
    reset_at = time.time() + window  # the emulator's window began a moment before
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    async with contextlib.AsyncExitStack() as exits:
        starting = asyncio.create_task(exits.enter_async_context(stack.gateway(SHARD_IDS="0")))
        try:
            statuses: list[status.GatewayStatus] = []
            while not statuses or statuses[0].session_start_wait_until is None:
                await asyncio.sleep(0.1)
                statuses = await fleet.gateway_statuses(stack.redis, stack.keys)
            assert accepted(discord) == []
            code, out = await shardline(capsys, "status")
            assert code == 0
            assert "too few session starts left to IDENTIFY" in out, out
            gateway = await asyncio.wait_for(asyncio.shield(starting), timeout=30)
        finally:
            starting.cancel()  # a failed test closes the gateway that was still starting
        await discord.wait_for(lambda: discord.connected_shards() == [0], what="shard 0")
        assert gateway.ledger is not None
        assert gateway.ledger.waiting_until() is None
    [identified] = accepted(discord)
    assert identified >= reset_at - 0.5
    assert discord.records.token_resets == 0
