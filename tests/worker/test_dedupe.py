"""The deduplicator against real Redis: claims, take-overs, done marks riding on claims."""

from __future__ import annotations

import asyncio
import time
import typing

import orjson
import pytest
import redis.asyncio as aioredis

from shared import clock as clock_module
from shared import envelope, keys
from tests import netproxy, servers
from worker import dedupe


def item(
    seq: int, *, shard: int = 0, session: str = "s1", t: str = "MESSAGE_CREATE"
) -> envelope.EventEnvelope:
    return envelope.EventEnvelope(
        pool="main", gateway="gw", reply_to="rq", shard_id=shard, shard_count=2,
        session=session, seq=seq, t=t, d={}, ts=time.time(),
    )  # fmt: skip


CutRedis = tuple[netproxy.TcpProxy, aioredis.Redis]


@pytest.fixture
async def cut_redis() -> typing.AsyncIterator[CutRedis]:
    """A client of the shared Redis through a proxy the test may cut and restore (started
    before any fake clock, so the proxy's pipes are never among the watched tasks)."""
    proxy = netproxy.TcpProxy(servers.REDIS_PORT)
    await proxy.start()
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}/0")
    yield proxy, client
    await client.aclose()
    await proxy.close()


def seqs(items: list[envelope.EventEnvelope]) -> list[tuple[int, int]]:
    return [(i.shard_id, i.seq) for i in items]


async def test_a_second_copy_is_skipped_while_the_first_is_processing_and_after_it_is_done(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    first = dedupe.Deduplicator(redis_client, redis_keys, "w1")
    second = dedupe.Deduplicator(redis_client, redis_keys, "w2")
    batch = [item(1), item(2), item(3)]
    assert seqs(await first.claim(batch, redelivered=False)) == [(0, 1), (0, 2), (0, 3)]
    assert await second.claim(batch, redelivered=False) == []
    stored = await redis_client.get(redis_keys.dedupe(batch[0].dedupe_key))
    assert stored == b"processing:w1"
    await first.finish(batch[:2], batch[2:])
    await first.flush()
    assert await redis_client.get(redis_keys.dedupe(batch[0].dedupe_key)) == b"done"
    assert await redis_client.ttl(redis_keys.dedupe(batch[0].dedupe_key)) > 60
    # The failed one was released; the done ones stay handled, even for a redelivery.
    assert seqs(await second.claim(batch, redelivered=True)) == [(0, 3)]


async def test_a_redelivery_takes_over_a_dead_holders_claim_but_a_fresh_copy_does_not(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    dead = dedupe.Deduplicator(redis_client, redis_keys, "dead")
    alive = dedupe.Deduplicator(redis_client, redis_keys, "alive")
    batch = [item(7), item(8)]
    await dead.claim(batch, redelivered=False)
    assert await alive.claim(batch, redelivered=False) == []
    assert seqs(await alive.claim(batch, redelivered=True)) == [(0, 7), (0, 8)]


async def test_messages_arriving_together_share_one_call_and_carry_pending_done_marks(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    worker = dedupe.Deduplicator(redis_client, redis_keys, "w")
    handled = [item(1, shard=1), item(2, shard=1)]
    await worker.claim(handled, redelivered=False)
    await worker.finish(handled, [])  # pending: flushed in the background, or with a claim
    # Three messages (two streams, and a duplicate inside one message) claimed concurrently.
    results = await asyncio.gather(
        worker.claim([item(10), item(11)], redelivered=False),
        worker.claim([item(10, session="s2"), item(10, session="s2")], redelivered=False),
        worker.claim([item(12)], redelivered=False),
    )
    assert [seqs(r) for r in results] == [[(0, 10), (0, 11)], [(0, 10)], [(0, 12)]]
    marks = await redis_client.mget([redis_keys.dedupe(i.dedupe_key) for i in handled])
    assert marks == [b"done", b"done"]
    await worker.flush()  # nothing left pending: no error, nothing written twice


async def test_done_marks_wait_for_the_next_claim_then_go_out_alone(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """At a few events per second and up a message's marks ride on the next message's claim
    (one Redis call per message); with no claim within FLUSH_EVERY they go out on their own."""
    redis_keys = keys.RedisKeys(namespace, "main")

    async def mark(one: envelope.EventEnvelope) -> bytes | None:
        return typing.cast(
            "bytes | None", await redis_client.get(redis_keys.dedupe(one.dedupe_key))
        )

    async with clock_module.FakeClock() as fake:
        worker = dedupe.Deduplicator(redis_client, redis_keys, "w", clock=fake)

        async def scenario() -> None:
            first, second = item(1), item(2)
            await worker.claim([first], redelivered=False)
            await worker.finish([first], [])
            await fake.sleep(dedupe.FLUSH_EVERY / 2)
            assert await mark(first) == b"processing:w"  # waiting for a claim to ride on
            await worker.claim([second], redelivered=False)
            assert await mark(first) == b"done"  # written by that claim's call
            await worker.finish([second], [])
            await fake.sleep(dedupe.FLUSH_EVERY / 4)
            assert await mark(second) == b"processing:w"
            await fake.sleep(dedupe.FLUSH_EVERY)
            assert await mark(second) == b"done"  # no claim came: on its own

        await fake.spawn(scenario())


async def test_large_sequence_numbers_make_the_same_keys_as_python(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    worker = dedupe.Deduplicator(redis_client, redis_keys, "w")
    big = item(2**40 + 3)
    assert await worker.claim([big], redelivered=False) == [big]
    assert await redis_client.exists(redis_keys.dedupe(big.dedupe_key)) == 1


async def test_redis_down_means_handling_without_dedupe_not_a_crash(namespace: str) -> None:
    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    worker = dedupe.Deduplicator(unreachable, keys.RedisKeys(namespace, "main"), "w")
    batch = [item(1), item(2)]
    assert await worker.claim(batch, redelivered=False) == batch
    assert worker.available is False
    await worker.finish(batch, [])
    await worker.flush()  # logged, not raised
    await unreachable.aclose()


async def test_redis_down_falls_back_to_what_this_replica_handled(namespace: str) -> None:
    """A replay that reaches the same replica while Redis is away is still skipped; a failed
    envelope is handled again."""
    proxy = netproxy.TcpProxy(servers.REDIS_PORT)  # cut in front of the shared Redis
    await proxy.start()
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}/0")
    worker = dedupe.Deduplicator(client, keys.RedisKeys(namespace, "main"), "w")
    try:
        before = [item(1), item(2)]
        assert await worker.claim(before, redelivered=False) == before  # shared claims
        await proxy.cut()
        batch = [item(1), item(2), item(3), item(4)]
        assert seqs(await worker.claim(batch, redelivered=False)) == [(0, 3), (0, 4)]
        assert worker.available is False
        await worker.finish([batch[2]], [batch[3]])  # 4 failed: it comes back and is handled
        assert seqs(await worker.claim(batch, redelivered=False)) == [(0, 4)]
        assert worker.local_skipped == 5
    finally:
        await client.aclose()
        await proxy.close()


async def test_a_redelivered_copy_waits_for_a_live_holder_and_is_skipped_once_it_is_done(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """The broker lost the connection under a handler that still runs (RabbitMQ restarted):
    the redelivered copy must not run it a second time."""
    redis_keys = keys.RedisKeys(namespace, "main")
    holder = dedupe.Deduplicator(redis_client, redis_keys, "holder")
    other = dedupe.Deduplicator(redis_client, redis_keys, "other")
    await holder.start()
    try:
        batch = [item(1), item(2)]
        assert seqs(await holder.claim(batch, redelivered=False)) == [(0, 1), (0, 2)]
        waiting = asyncio.ensure_future(other.claim(batch, redelivered=True))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # the holder lives: the copy waits, it does not take over
        await holder.finish(batch[:1], batch[1:])  # one handled, one failed (released)
        await holder.flush()
        assert seqs(await asyncio.wait_for(waiting, 5)) == [(0, 2)]  # only the failed one
    finally:
        await holder.close()


async def test_a_redelivered_copy_of_this_workers_own_claim_waits_for_it_too(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    worker = dedupe.Deduplicator(redis_client, redis_keys, "w")
    await worker.start()
    try:
        batch = [item(5)]
        await worker.claim(batch, redelivered=False)
        again = asyncio.ensure_future(worker.claim(batch, redelivered=True))
        await asyncio.sleep(0.3)
        assert not again.done()
        await worker.finish(batch, [])
        assert await asyncio.wait_for(again, 5) == []
    finally:
        await worker.close()


async def test_the_claims_of_a_holder_that_died_are_taken_over_once_its_key_expires(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    doomed = dedupe.Deduplicator(redis_client, redis_keys, "doomed")
    survivor = dedupe.Deduplicator(redis_client, redis_keys, "survivor")
    await doomed.start()
    batch = [item(9)]
    await doomed.claim(batch, redelivered=False)
    assert doomed._alive is not None
    doomed._alive.cancel()  # kill -9: no more refreshes, and nothing deleted
    started = time.monotonic()
    assert seqs(await asyncio.wait_for(survivor.claim(batch, redelivered=True), 10)) == [(0, 9)]
    # Within the holder's TTL and a few polls, not two TTLs.
    assert time.monotonic() - started <= keys.DEDUPE_HOLDER_TTL + 2.5
    assert await redis_client.get(redis_keys.dedupe(batch[0].dedupe_key)) == b"processing:survivor"


async def test_a_replay_while_redis_is_away_waits_for_it_and_is_skipped_if_handled_elsewhere(
    cut_redis: CutRedis,
    redis_client: aioredis.Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Soak seed 311771: during a Redis hang a successor gateway's RESUME replay (or a
    redelivery) ran on a replica that had not seen it, and was answered twice. A replayed or
    redelivered message now waits for Redis; an interaction in it runs at once."""
    monkeypatch.setattr(dedupe, "HOLD_FOR", 10_000.0)  # the test says when Redis is back
    redis_keys = keys.RedisKeys(namespace, "main")
    first = dedupe.Deduplicator(redis_client, redis_keys, "w1")
    handled = [item(1), item(2)]
    assert await first.claim(handled, redelivered=False) == handled
    await first.finish(handled, [])
    await first.flush()
    proxy, client = cut_redis
    async with clock_module.FakeClock() as fake:
        second = dedupe.Deduplicator(client, redis_keys, "w2", clock=fake)
        await proxy.cut()
        replay = [item(1), item(2), item(3), item(4, t="INTERACTION_CREATE")]
        started = fake.monotonic()
        claiming = fake.spawn(second.claim(replay, redelivered=False, replayed=True))
        while fake.monotonic() - started < 5:
            assert not claiming.done()
            await asyncio.sleep(0.001)
        back_at = fake.monotonic()
        await proxy.restore()  # from the test's own task: the fake clock keeps moving
        taken = await claiming
    # 1 and 2 ran on w1: skipped once Redis could say so; 3 and the interaction run here.
    assert seqs(taken) == [(0, 3), (0, 4)]
    # Claimed once Redis had answered for HOLD_SETTLE (the other replica's marks go out).
    waited = fake.monotonic() - back_at
    # (The hold may ask once or twice more, on the fake clock, while the proxy reopens.)
    assert dedupe.HOLD_SETTLE <= waited <= dedupe.HOLD_SETTLE + 5 * dedupe.HOLD_EVERY
    assert second.held == 1
    assert second.hold_expired == 0
    assert second.available is True


async def test_a_held_message_runs_on_local_memory_once_redis_stays_away_for_the_hold(
    cut_redis: CutRedis,
    namespace: str,
) -> None:
    proxy, client = cut_redis
    async with clock_module.FakeClock() as fake:
        worker = dedupe.Deduplicator(client, keys.RedisKeys(namespace, "main"), "w", clock=fake)
        await proxy.cut()
        started = fake.monotonic()
        batch = [item(1), item(2)]
        taken = await fake.spawn(worker.claim(batch, redelivered=True, replayed=True))
    assert taken == batch  # unknown is not "handled": never dropped
    assert fake.monotonic() - started >= dedupe.HOLD_FOR
    assert (worker.held, worker.hold_expired) == (1, 1)
    # A first delivery is never held, nor a retry of our own (released when it failed).
    async with clock_module.FakeClock() as fake:
        worker = dedupe.Deduplicator(client, keys.RedisKeys(namespace, "main"), "w", clock=fake)
        started = fake.monotonic()
        fresh = [item(3)]
        assert await fake.spawn(worker.claim(fresh, redelivered=False)) == fresh
        retry = [item(4)]
        assert await fake.spawn(worker.claim(retry, redelivered=True)) == retry
        assert fake.monotonic() == started
        assert worker.held == 0


async def test_done_marks_redis_missed_are_written_when_it_answers_again(
    cut_redis: CutRedis, redis_client: aioredis.Redis, namespace: str
) -> None:
    """What a replica handled during an outage must be "done" in Redis afterwards, or a replay
    reaching another replica then runs it again."""
    redis_keys = keys.RedisKeys(namespace, "main")
    proxy, client = cut_redis
    worker = dedupe.Deduplicator(client, redis_keys, "w1")
    await proxy.cut()
    batch = [item(1), item(2)]
    assert await worker.claim(batch, redelivered=False) == batch  # on local memory
    await worker.finish(batch, [])
    await worker.flush()  # refused: kept, and offered again on its own
    await proxy.restore()
    # No traffic on this replica: the kept marks go out without a claim or a flush.
    key = redis_keys.dedupe(batch[0].dedupe_key)
    for _ in range(100):
        if await redis_client.get(key) == b"done":
            break
        await asyncio.sleep(0.05)
    assert await redis_client.get(key) == b"done"
    other = dedupe.Deduplicator(redis_client, redis_keys, "w2")
    assert await other.claim(batch, redelivered=True) == []


async def test_a_replica_closing_while_redis_is_away_waits_for_it_to_take_its_marks(
    cut_redis: CutRedis, redis_client: aioredis.Redis, namespace: str
) -> None:
    """Soak seed 851804: a worker SIGTERMed during a Redis hang exited with the marks of what
    it had handled; a replay held on another replica then found nothing and ran again."""
    redis_keys = keys.RedisKeys(namespace, "main")
    proxy, client = cut_redis
    worker = dedupe.Deduplicator(client, redis_keys, "w1")
    await proxy.cut()
    batch = [item(1)]
    assert await worker.claim(batch, redelivered=False) == batch  # on local memory
    await worker.finish(batch, [])

    async def back_soon() -> None:
        await asyncio.sleep(0.5)
        await proxy.restore()

    restoring = asyncio.get_running_loop().create_task(back_soon())
    await worker.flush_before_close(timeout=10)
    await restoring
    await worker.close()
    assert await redis_client.get(redis_keys.dedupe(batch[0].dedupe_key)) == b"done"
    # Redis gone for good: the close gives up after its wait, and says so.
    second = dedupe.Deduplicator(client, redis_keys, "w2")
    await proxy.cut()
    more = [item(2)]
    assert await second.claim(more, redelivered=False) == more
    await second.finish(more, [])
    await second.flush_before_close(timeout=0.5)
    await second.close()
    assert await redis_client.get(redis_keys.dedupe(more[0].dedupe_key)) is None


async def _marks_written_late(
    fake: clock_module.FakeClock,
    redis_client: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    handled: list[envelope.EventEnvelope],
    after: float,
) -> None:
    """The replica that ran ``handled`` on its own memory writes its marks ``after`` seconds
    (on the fake clock, which stands still while it writes)."""
    await fake.sleep(after)
    ran = dedupe.Deduplicator(redis_client, redis_keys, "w1")
    await ran.claim(handled, redelivered=False)
    await ran.finish(handled, [])
    await ran.flush()


async def test_a_replay_just_after_an_outage_waits_for_the_marks_of_the_replica_that_ran_it(
    cut_redis: CutRedis, redis_client: aioredis.Redis, namespace: str
) -> None:
    """Soak seed 762653: 8 prefix commands answered twice. During a Redis hang a replica ran
    them on its own memory; a second after the hang a gateway took the shard over and RESUMEd
    from a checkpoint the hang had kept back, and the replay reached a replica whose Redis
    answered again, which claimed it before the first replica's breaker let its marks out. A
    replica whose last call failed now holds such a replay (``HOLD_SETTLE`` once Redis
    answers)."""
    redis_keys = keys.RedisKeys(namespace, "main")
    proxy, client = cut_redis
    async with clock_module.FakeClock() as fake:
        late = dedupe.Deduplicator(client, redis_keys, "w2", clock=fake)
        await proxy.cut()
        assert seqs(await fake.spawn(late.claim([item(9)], redelivered=False))) == [(0, 9)]
        assert late.available is False
        await proxy.restore()  # Redis is back; this replica has not called it yet
        replay = [item(1), item(2), item(3)]
        writing = fake.spawn(_marks_written_late(fake, redis_client, redis_keys, replay[:2], 1.5))
        taken = await fake.spawn(late.claim(replay, redelivered=False, replayed=True))
        await writing
    assert seqs(taken) == [(0, 3)]
    assert late.held == 1


async def test_a_replay_reaching_a_replica_that_saw_no_outage_waits_out_anothers_recovery(
    cut_redis: CutRedis, redis_client: aioredis.Redis, namespace: str
) -> None:
    """The same, on a replica that made no call during the outage (started after it): the
    first replica whose call succeeds afterwards says so in Redis for ``HOLD_SETTLE``, and a
    replay claimed meanwhile waits for it."""
    redis_keys = keys.RedisKeys(namespace, "main")
    proxy, client = cut_redis
    recovering = dedupe.Deduplicator(client, redis_keys, "w0")
    await proxy.cut()
    assert seqs(await recovering.claim([item(9)], redelivered=False)) == [(0, 9)]
    await proxy.restore()
    assert seqs(await recovering.claim([item(10)], redelivered=False)) == [(0, 10)]  # says so
    for _ in range(500):  # written in the background
        if await redis_client.exists(redis_keys.dedupe_recovered()):
            break
        await asyncio.sleep(0.01)
    assert await redis_client.exists(redis_keys.dedupe_recovered())
    async with clock_module.FakeClock() as fake:
        fresh = dedupe.Deduplicator(redis_client, redis_keys, "w3", clock=fake)
        replay = [item(1), item(2), item(3)]
        writing = fake.spawn(_marks_written_late(fake, redis_client, redis_keys, replay[:2], 0.5))
        taken = await fake.spawn(fresh.claim(replay, redelivered=False, replayed=True))
        await writing
    assert seqs(taken) == [(0, 3)]
    assert fresh.held == 1
    # A first delivery never waits for it.
    async with clock_module.FakeClock() as fake:
        started = fake.monotonic()
        assert seqs(await fake.spawn(fresh.claim([item(20)], redelivered=False))) == [(0, 20)]
        assert fake.monotonic() == started


class SlowFirstCall:
    """The deduplicator's script, its first call answered ``delay`` late on the fake clock (a
    Redis slow to answer one call); records each call's claims. The claims' tasks wait on
    their call (time stands still for them): the test moves time with ``fake.advance``."""

    def __init__(
        self, worker: dedupe.Deduplicator, fake: clock_module.FakeClock, delay: float
    ) -> None:
        self._real = worker._script
        self._fake = fake
        self._delay = delay
        self.calls: list[list[int]] = []
        self.called = asyncio.Event()
        worker._script = self  # type: ignore[assignment]

    async def __call__(self, **kwargs: typing.Any) -> typing.Any:
        claims = orjson.loads(kwargs["args"][0])["c"]
        self.calls.append([seq for _, _, seqs in claims for seq in seqs])
        self.called.set()
        if len(self.calls) == 1:
            await self._fake.sleep(self._delay)
        return await self._real(**kwargs)


async def claims_behind_a_slow_call(
    redis_client: aioredis.Redis, namespace: str, fake: clock_module.FakeClock, delay: float
) -> tuple[
    SlowFirstCall, asyncio.Task[list[envelope.EventEnvelope]], list[asyncio.Task[typing.Any]]
]:
    """Claim 1 (its call answers ``delay`` late), then 2 and 3 while that call is out."""
    worker = dedupe.Deduplicator(redis_client, keys.RedisKeys(namespace, "main"), "w", clock=fake)
    script = SlowFirstCall(worker, fake, delay)
    first = fake.spawn(worker.claim([item(1)], redelivered=False))
    await script.called.wait()
    later = [fake.spawn(worker.claim([item(n)], redelivered=False)) for n in (2, 3)]
    await asyncio.sleep(0.05)  # real time: the claims are queued, the fake clock stands
    assert script.calls == [[1]]
    return script, first, later


async def test_claims_made_while_a_call_is_out_go_together_in_the_next(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """One event per message at 4,000/s made 3.3 claims per call with every turn's claims sent
    at once; the claims that arrive while a call is out now wait for it and share one."""
    async with clock_module.FakeClock() as fake:
        delay = dedupe.CLAIM_WAIT_MAX / 2
        script, first, later = await claims_behind_a_slow_call(redis_client, namespace, fake, delay)
        fake.advance(delay)
        assert seqs(await first) == [(0, 1)]
        assert [seqs(await claim) for claim in later] == [[(0, 2)], [(0, 3)]]
    assert script.calls == [[1], [2, 3]]


async def test_claims_go_beside_a_call_that_does_not_answer(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """A call that hangs must not hold the next claims (an interaction has 3 s) past
    CLAIM_WAIT_MAX: they go in a call of their own beside it."""
    async with clock_module.FakeClock() as fake:
        script, first, later = await claims_behind_a_slow_call(redis_client, namespace, fake, 10.0)
        fake.advance(dedupe.CLAIM_WAIT_MAX)
        assert [seqs(await claim) for claim in later] == [[(0, 2)], [(0, 3)]]
        assert script.calls == [[1], [2, 3]]
        assert not first.done()
        fake.advance(10.0)
        assert seqs(await first) == [(0, 1)]
