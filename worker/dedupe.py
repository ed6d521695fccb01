"""Each envelope handled once, even when a RESUME replays it or a crash redelivers it.

A key per envelope (``ns:dedupe:{pool:shard:session}:seq``) moves from ``processing`` to
``done``. A copy that arrives while another is processing is skipped, unless the broker
redelivered it. A redelivered copy takes over a claim whose holder died (its holder key,
refreshed every second, expired); while the holder lives (a broker connection lost under a
handler that still runs, here or on another replica) it waits for that handling to end:
``done`` means skipped, a released claim (the handler failed) means handled here.

Cost on the hot path: messages that arrive together (up to the prefetch) share one script call,
and those that arrive while a call is out wait for it and share the next (``CLAIMS_IN_FLIGHT``,
``CLAIM_WAIT_MAX``). A call claims all their envelopes and also writes the ``done`` marks
waiting since the last call;
marks with no claim to travel with go out on their own after ``FLUSH_EVERY``. The call carries
one JSON argument, ``[prefix, seqs]`` per message, and the script builds the keys: passing a
key per envelope costs redis-py an encoded argument each, which profiling showed to be a
quarter of the worker's time per event. On a Redis Cluster this is still slot-safe: a stream's
keys share its hash tag (``shared.keys``), the call declares the stream's key in ``KEYS`` (so
it is routed to that slot's master, which refuses any other slot), and the streams of one batch
are claimed by one call each, side by side. Whether a holder still lives is asked with its own
command (holder keys are in other slots), on the rare path of a redelivered copy.

While Redis is away each replica remembers what it took (``LOCAL_MEMORY``) and handles what it
has not seen. That is only right for a first delivery: a message the broker redelivered, or
one the gateway flags as Discord's replay after a RESUME (``topology.HEADER_REPLAY``), may
have been handled on another replica, whose memory this one cannot read. Such a message is
held, asking Redis again every ``HOLD_EVERY``, for up to ``HOLD_FOR`` (the soak's Redis hangs
last seconds), and claimed ``HOLD_SETTLE`` after Redis first answers (the replica that handled
it may still be writing its mark); only after ``HOLD_FOR`` is it handled on this replica's
word, and said so. Interactions are
never held: their 3 s deadline matters more, and Discord refuses a second initial response to
one interaction (discord-api-docs, Receiving and Responding, "Responding to an
Interaction": an interaction is acknowledged once). "done" marks that Redis did not take are
kept (up to ``LOCAL_MEMORY`` envelopes) and offered again every ``_RETRY_MARKS_EVERY`` until it
takes them, so a replay after the outage still finds them. Those marks reach Redis only once
that replica's breaker lets calls through again (up to 2 s after Redis answers), so a replay
claimed just after an outage waits too: held by a replica whose last call failed, and waiting
out ``keys.dedupe_recovered`` (the first replica back says so, for ``HOLD_SETTLE``) on one
that saw no outage (soak seed 762653). Left open: an envelope a replica took on its own
memory and is still handling past those seconds has no claim in Redis.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import typing

import orjson

from shared import clock as clock_module
from shared import keys, lifecycle, redis_client, topology
from shared.cache import snapshot

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import envelope

_LOGGER = logging.getLogger("shardline.worker.dedupe")
_PROCESSING_TTL: typing.Final = 120
#: "done" marks with no claim to ride on are written in the background, this often.
#: Long enough that at a few events per second and up the marks ride on the next claim (one
#: Redis call per message, not two: docs/benchmarks.md, issue 22); short next to what a mark is
#: for (a replay or redelivery of a handled event finds it, or waits for it while its
#: handler's replica lives: ``_SETTLE_EVERY``).
FLUSH_EVERY: typing.Final = 0.1
# KEYS[1] = the stream key of every prefix below (one hash tag: one slot)
# ARGV[1] = {"h": holder, "p": processing TTL, "t": done TTL,
#            "d": [[prefix, [seq...]]...],            the done marks, written first
#            "c": [[prefix, redelivered, [seq...]]...]}  the claims, answered in order
# A claim takes a free key; never a "done" one. Answers {codes, holders}: code 1 (take),
# 0 (skip) or, when the broker redelivered the message and another claim holds the key,
# 3 with that claim's value in holders (the caller asks whether its holder lives).
# ARGV[2], on one server (and under Sentinel) only: the cache reads of the claimed envelopes'
# events (``shared.cache.snapshot``), {"l": ..., "q": [request...], "n": [claim number...]}:
# a request is read when its claim (numbered from 1 in the order of "c") answered 1 or 3, in
# the claim's round trip; a read that fails answers 0 and leaves the claims as they are.
_CLAIM_AND_MARK: typing.Final = (
    snapshot.READ_FUNCTIONS
    + """
local a = cjson.decode(ARGV[1])
for _, group in ipairs(a.d) do
  for _, seq in ipairs(group[2]) do
    redis.call('SET', string.format('%s:%d', group[1], seq), 'done', 'EX', a.t)
  end
end
local won, holders, seen, n = {}, {}, {}, 0
for _, group in ipairs(a.c) do
  local prefix, redelivered = group[1], group[2] == 1
  for _, seq in ipairs(group[3]) do
    local key = string.format('%s:%d', prefix, seq)
    n = n + 1
    if seen[key] then
      won[n] = 0
    elseif redis.call('SET', key, a.h, 'NX', 'EX', a.p) then
      won[n] = 1
    elseif redelivered then
      local held = redis.call('GET', key)
      if held == 'done' then
        won[n] = 0
      elseif held then
        won[n] = 3
        holders[#holders + 1] = held
      else
        redis.call('SET', key, a.h, 'EX', a.p)
        won[n] = 1
      end
    else
      won[n] = 0
    end
    seen[key] = true
  end
end
if ARGV[2] then
  -- Everything of the read inside pcall: the claims above are written and stand whatever it
  -- meets.
  local ok, answers = pcall(function()
    local r = cjson.decode(ARGV[2])
    local kept = {}
    for i, q in ipairs(r.q) do
      local code = won[r.n[i]]
      if code == 1 or code == 3 then kept[#kept + 1] = q end
    end
    r.q = kept
    return read_snapshots(r)
  end)
  return {won, holders, ok and answers or 0}
end
return {won, holders}
"""
)
# KEYS[1] = a claim; ARGV = the claim's value seen, the new holder, processing TTL.
# Takes over a dead holder's claim if it is still that claim.
_TAKE_OVER: typing.Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

_Group = tuple[str, list[int]]
#: The cache reads asked with a claim: one request (or None: nothing to read) per envelope.
Reads = typing.Sequence["snapshot.SnapshotRequest | None"]
#: What a claim call read: claim number (from 0, in the call's order) -> snapshot; None when
#: nothing was asked or the read failed.
_Found = dict[int, "snapshot.Snapshot"] | None
_Answer = tuple[list[int], dict[int, "snapshot.Snapshot"]]
_HOLDER_PREFIX: typing.Final = "processing:"  # 11 characters: the script's string.sub(held, 12)
#: How often a redelivered copy asks again whether a live holder's handling has ended.
_SETTLE_EVERY: typing.Final = 0.1
_TAKE, _SKIP, _WAIT, _HELD = 1, 0, 2, 3
#: Envelopes this replica remembers handling, for while Redis is away (a resume replay that
#: reaches the same replica is still skipped); the oldest are forgotten first.
LOCAL_MEMORY: typing.Final = 65_536
#: A redelivered or replayed message waits this long for Redis before it is handled on this
#: replica's memory alone, asking again this often.
HOLD_FOR: typing.Final = 30.0
HOLD_EVERY: typing.Final = 1.0
#: Once Redis answers again, a held message waits this long before it is claimed: the replica
#: that handled it may still be writing its "done" mark (its breaker lets calls through 2 s
#: after Redis answers, its kept marks go out every ``_RETRY_MARKS_EVERY``).
HOLD_SETTLE: typing.Final = 3.0
#: A replayed message asks whether a replica just recovered from an outage at most this often.
_RECOVERY_ASKED_EVERY: typing.Final = 0.1
#: Cache read requests that ride on one claim call at most (whole messages); the reads of the
#: rest go out apart, in calls of ``worker.event_view.MAX_PER_CALL`` side by side, so that a
#: call claiming a busy worker's thousands of envelopes stays short. (The unbounded version
#: ran 50-event messages 10-28% slower than reads apart, but it also built every request
#: twice; the bound alone was not measured apart from that fix.)
READ_WITH_CLAIM: typing.Final = 200
#: Claim calls in flight at once. The claims that arrive while they are out wait and go in the
#: next call together: one event per message at 4,000/s made 3.3 claims per call with no bound
#: (issue 22), and a call's own cost on the client (~100 µs of CPU) dwarfs a claim's.
CLAIMS_IN_FLIGHT: typing.Final = 1
#: ...unless the call in flight has not answered after this long: the claims waiting go beside
#: it (under a hung Redis each call waits out the breaker's deadline, and an interaction must
#: not wait out several). A call's lookups of live holders run after its slot is free.
CLAIM_WAIT_MAX: typing.Final = 0.02
#: A cache read that keeps failing in the claim is said this often at most (and counted).
_READ_FAILURE_LOG_EVERY: typing.Final = 60.0
#: How often "done" marks Redis refused are offered to it again.
_RETRY_MARKS_EVERY: typing.Final = 0.25
#: At close, how long "done" marks Redis has not taken wait for it: a replica stopped during an
#: outage took them with it, and a replay held elsewhere then ran again (soak seed 851804: four
#: answered twice, a worker SIGTERMed during a Redis hang while a gateway handed off). Within
#: the stack's 40 s grace after the 30 s drain.
CLOSE_WAIT: typing.Final = 8.0


class _Waiting(typing.NamedTuple):
    """A claim waiting for the next script call."""

    groups: list[_Group]
    redelivered: bool
    size: int
    reads: Reads | None
    future: asyncio.Future[_Answer]


class Deduplicator:
    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        worker_id: str,
        *,
        clock: clock_module.Clock | None = None,
    ) -> None:
        self._redis = redis
        self._clock = clock or clock_module.SystemClock()
        self._keys = redis_keys
        self._holder = f"{_HOLDER_PREFIX}{worker_id}"
        self._holder_key = redis_keys.dedupe_holder(worker_id)
        self._recovered_key = redis_keys.dedupe_recovered()
        self._recovery_asked_at = -_RECOVERY_ASKED_EVERY
        self._recovery_until = 0.0
        self._alive: asyncio.Task[None] | None = None
        self._script = redis.register_script(_CLAIM_AND_MARK)
        self._take_over = redis.register_script(_TAKE_OVER)
        self._cluster = redis_client.is_cluster(redis)
        self._done: list[_Group] = []
        self._flusher: asyncio.Task[None] | None = None
        self._waiting: list[_Waiting] = []
        self._claim_scheduled = False
        self._claims: set[asyncio.Task[None]] = set()
        #: Claim calls in flight (``CLAIMS_IN_FLIGHT`` at most, unless one is overdue).
        self._claiming = 0
        self._overdue: asyncio.Task[None] | None = None
        self.available = True
        #: Dedupe keys of envelopes this replica took, newest last (bounded).
        self._local: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.local_skipped = 0
        #: Messages held for Redis (redelivered or replayed while it was away), and of those
        #: handled after ``HOLD_FOR`` on this replica's memory alone.
        self.held = 0
        self.hold_expired = 0
        #: "done" marks dropped because Redis stayed away past ``LOCAL_MEMORY`` of them.
        self.marks_dropped = 0
        #: Claim calls whose cache reads failed in the script (their events read on their own).
        self.reads_failed = 0
        self._read_failure_logged_at = -_READ_FAILURE_LOG_EVERY
        #: How long "done" marks wait for a claim to ride on before they go out on their own.
        self.flush_every = FLUSH_EVERY

    def _remember(self, envelopes: typing.Iterable[envelope.EventEnvelope]) -> None:
        local = self._local
        for item in envelopes:
            local[item.dedupe_key] = None
        while len(local) > LOCAL_MEMORY:
            local.popitem(last=False)

    def _local_claim(
        self, envelopes: typing.Sequence[envelope.EventEnvelope]
    ) -> list[envelope.EventEnvelope]:
        """Redis away: per-replica dedupe, from what this replica took before."""
        taken = [item for item in envelopes if item.dedupe_key not in self._local]
        self.local_skipped += len(envelopes) - len(taken)
        self._remember(taken)
        return taken

    async def start(self) -> None:
        """Keep this worker's holder key alive, so its claims are waited for, not taken over."""
        with contextlib.suppress(*redis_client.REDIS_ERRORS):
            await self._redis.set(self._holder_key, "1", ex=keys.DEDUPE_HOLDER_TTL)
        self._alive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def flush_before_close(self, timeout: float = CLOSE_WAIT) -> None:
        """Write every "done" mark, waiting up to ``timeout`` for a Redis that is away."""
        deadline = self._clock.monotonic() + timeout
        await self.flush()
        while self._done and self._clock.monotonic() < deadline:
            await self._clock.sleep(_RETRY_MARKS_EVERY)
            await self.flush()
        if self._done:
            _LOGGER.warning(
                "Redis away at close: dedupe marks not written (their events may run again)",
                extra={"events": sum(len(seqs) for _, seqs in self._done)},
            )

    async def close(self) -> None:
        """After the drain: nothing of ours is in progress any more."""
        if self._flusher is not None:
            await lifecycle.cancel_and_wait([self._flusher])
            self._flusher = None
        if self._alive is not None:
            await lifecycle.cancel_and_wait([self._alive])
            self._alive = None
        if self._overdue is not None:
            await lifecycle.cancel_and_wait([self._overdue])
            self._overdue = None
        with contextlib.suppress(*redis_client.REDIS_ERRORS):
            await self._redis.delete(self._holder_key)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(keys.DEDUPE_HOLDER_TTL / 3)
            try:
                await self._redis.set(self._holder_key, "1", ex=keys.DEDUPE_HOLDER_TTL)
            except redis_client.REDIS_ERRORS as exc:
                _LOGGER.debug("holder key not refreshed", extra={"error": str(exc)})

    def _groups(self, envelopes: typing.Iterable[envelope.EventEnvelope]) -> list[_Group]:
        """``[prefix, seqs]`` per stream, in order (a message holds one stream in practice)."""
        groups: list[_Group] = []
        last_scope = None
        for item in envelopes:
            scope = item.dedupe_scope
            if scope != last_scope:
                groups.append((self._keys.dedupe_stream(scope), []))
                last_scope = scope
            groups[-1][1].append(item.seq)
        return groups

    async def claim(
        self,
        envelopes: typing.Sequence[envelope.EventEnvelope],
        *,
        redelivered: bool,
        replayed: bool = False,
    ) -> list[envelope.EventEnvelope]:
        """The envelopes this worker should handle now (see :meth:`claim_and_read`)."""
        taken, _ = await self.claim_and_read(
            envelopes, None, redelivered=redelivered, replayed=replayed
        )
        return taken

    async def claim_and_read(
        self,
        envelopes: typing.Sequence[envelope.EventEnvelope],
        reads: Reads | None,
        *,
        redelivered: bool,
        replayed: bool = False,
    ) -> tuple[list[envelope.EventEnvelope], dict[int, snapshot.Snapshot]]:
        """The envelopes this worker should handle now (one round trip in the common case),
        and, by ``id()`` of a taken envelope, what the cache held of ``reads`` (one request or
        None per envelope) when it was taken: on one server (and under Sentinel) the claim's
        script reads them in the same round trip. An envelope taken without its snapshot
        (on a Redis Cluster, after a wait, on this replica's memory, or when the read failed)
        is not in it: the caller reads it on its own.

        ``replayed``: the message may have been handled elsewhere (Discord's replay after a
        RESUME, flagged by the gateway, or the broker's redelivery): its envelopes other than
        interactions wait for Redis while it is away (see the module's docstring). A retry of
        our own (``redelivered`` alone) was released when it failed and is not held.

        Just after an outage such a message waits too (soak seed 762653): Redis answers again,
        but the replica that handled it on its own memory may not have written its mark yet
        (its breaker lets calls through up to 2 s later). So it is held when this replica's
        last call to Redis failed, and waits while any replica's recovery is under
        ``HOLD_SETTLE`` old (``keys.dedupe_recovered``, written by the first call that
        succeeds after an outage)."""
        if replayed and envelopes and envelopes[0].t not in topology.INTERACTION_EVENTS:
            if not self.available:
                return await self._hold(envelopes, redelivered=redelivered), {}
            await self._wait_out_recovery()
        try:
            won, found = await self._claim_codes(envelopes, redelivered=redelivered, reads=reads)
        except redis_client.REDIS_ERRORS as exc:
            if self.available:
                _LOGGER.warning(
                    "Redis unavailable: handling without dedupe", extra={"error": str(exc)}
                )
            self.available = False
            if not replayed:
                return self._local_claim(envelopes), {}
            return await self._hold(envelopes, redelivered=redelivered), {}
        # Taken at once (a take-over included): a snapshot read in the claim's call.
        snapshots = {
            id(envelopes[index]): found[index]
            for index, code in enumerate(won)
            if code == _TAKE and index in found
        }
        return await self._taken(envelopes, won), snapshots

    async def _claim_codes(
        self,
        envelopes: typing.Sequence[envelope.EventEnvelope],
        *,
        redelivered: bool,
        reads: Reads | None = None,
    ) -> _Answer:
        future: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append(
            _Waiting(self._groups(envelopes), redelivered, len(envelopes), reads, future)
        )
        if not self._claim_scheduled:
            self._claim_scheduled = True
            asyncio.get_running_loop().call_soon(self._claim_pending)
        return await future

    async def _hold(
        self, envelopes: typing.Sequence[envelope.EventEnvelope], *, redelivered: bool
    ) -> list[envelope.EventEnvelope]:
        """Redis away and these may have run elsewhere: interactions now on this replica's
        memory, the rest once Redis answers (or after ``HOLD_FOR`` on this replica's memory)."""
        interactions = [e for e in envelopes if e.t in topology.INTERACTION_EVENTS]
        others = [e for e in envelopes if e.t not in topology.INTERACTION_EVENTS]
        taken = self._local_claim(interactions)
        if not others:
            return taken
        self.held += 1
        deadline = self._clock.monotonic() + HOLD_FOR
        while self._clock.monotonic() < deadline:
            await self._clock.sleep(HOLD_EVERY)
            try:
                await self._redis.ping()
            except redis_client.REDIS_ERRORS:
                continue
            if not self.available:
                self.available = True
                self._recovered()  # say so now: a replay elsewhere waits with this one
            # Redis answers: give the replica that handled these the time to say so.
            await self._clock.sleep(HOLD_SETTLE)
            try:
                won, _ = await self._claim_codes(others, redelivered=redelivered)
            except redis_client.REDIS_ERRORS:
                continue
            taken += await self._taken(others, won)
            break
        else:
            self.hold_expired += 1
            _LOGGER.warning(
                "Redis away for the whole hold: a redelivered or replayed message is handled "
                "on this replica's memory alone (it may have run on another)",
                extra={"events": len(others), "held_for": HOLD_FOR},
            )
            taken += self._local_claim(others)
        order = {id(item): index for index, item in enumerate(envelopes)}
        taken.sort(key=lambda item: order[id(item)])
        return taken

    async def _wait_out_recovery(self) -> None:
        """Wait while another replica's recovery from an outage is under ``HOLD_SETTLE`` old
        (asked at most every ``_RECOVERY_ASKED_EVERY``: a replay comes as a burst)."""
        now = self._clock.monotonic()
        if now - self._recovery_asked_at < _RECOVERY_ASKED_EVERY:
            left = int((self._recovery_until - now) * 1000)
        else:
            try:
                left = int(await self._redis.pttl(self._recovered_key))
            except redis_client.REDIS_ERRORS:
                return  # the claim finds Redis away and holds
            self._recovery_asked_at = now
            self._recovery_until = now + max(left, 0) / 1000
        if left > 0:
            self.held += 1
            await self._clock.sleep(min(left / 1000, HOLD_SETTLE))

    def _recovered(self) -> None:
        """The first call after an outage succeeded: say so, for ``HOLD_SETTLE``, to every
        replica (a replay reaching one that saw no outage waits out the others' marks)."""

        async def announce() -> None:
            with contextlib.suppress(*redis_client.REDIS_ERRORS):
                await self._redis.set(self._recovered_key, self._holder, px=int(HOLD_SETTLE * 1000))

        task = asyncio.get_running_loop().create_task(announce())
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def _taken(
        self, envelopes: typing.Sequence[envelope.EventEnvelope], won: list[int]
    ) -> list[envelope.EventEnvelope]:
        """What Redis's answer ``won`` gives this worker to handle."""
        if not self.available:
            self._recovered()
        self.available = True
        waiting = [item for item, answer in zip(envelopes, won, strict=True) if answer == _WAIT]
        taken = [item for item, answer in zip(envelopes, won, strict=True) if answer == _TAKE]
        if waiting:
            try:
                taken += await self._settle(waiting)
            except redis_client.REDIS_ERRORS as exc:
                _LOGGER.warning(
                    "Redis unavailable: handling without dedupe", extra={"error": str(exc)}
                )
                self.available = False
                taken += waiting
            order = {id(item): index for index, item in enumerate(envelopes)}
            taken.sort(key=lambda item: order[id(item)])
        self._remember(taken)
        return taken

    async def _settle(
        self, envelopes: list[envelope.EventEnvelope]
    ) -> list[envelope.EventEnvelope]:
        """Redelivered copies of envelopes a live holder is handling: ask until it is over."""
        taken: list[envelope.EventEnvelope] = []
        while envelopes:
            await asyncio.sleep(_SETTLE_EVERY)
            claims = [(prefix, 1, seqs) for prefix, seqs in self._groups(envelopes)]
            won, _ = await self._call([], claims)
            taken += [item for item, answer in zip(envelopes, won, strict=True) if answer == _TAKE]
            envelopes = [
                item for item, answer in zip(envelopes, won, strict=True) if answer == _WAIT
            ]
        return taken

    def _claim_pending(self, *, overdue: bool = False) -> None:
        self._claim_scheduled = False
        if not self._waiting:
            return
        if self._claiming >= CLAIMS_IN_FLIGHT and not overdue:
            # Started when the call in flight answers, with what arrived meanwhile; or after
            # CLAIM_WAIT_MAX beside it, if it is slow to (a Redis that hangs).
            if self._overdue is None:
                self._overdue = asyncio.get_running_loop().create_task(self._when_overdue())
            return
        waiting, self._waiting = self._waiting, []
        self._claiming += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._claim_slot_free()

        task = asyncio.get_running_loop().create_task(self._claim_batch(waiting, release))
        self._claims.add(task)

        def ended(done: asyncio.Task[None]) -> None:
            self._claims.discard(done)
            release()

        task.add_done_callback(ended)

    async def _when_overdue(self) -> None:
        try:
            await self._clock.sleep(CLAIM_WAIT_MAX)
        finally:
            if self._overdue is asyncio.current_task():
                self._overdue = None
        self._claim_pending(overdue=True)

    def _claim_slot_free(self) -> None:
        self._claiming -= 1
        if self._overdue is not None:
            self._overdue.cancel()
            self._overdue = None
        if self._waiting and not self._claim_scheduled:
            self._claim_scheduled = True
            asyncio.get_running_loop().call_soon(self._claim_pending)

    async def _claim_batch(
        self, waiting: list[_Waiting], answered: typing.Callable[[], None]
    ) -> None:
        claims = [
            (prefix, int(entry.redelivered), seqs)
            for entry in waiting
            for prefix, seqs in entry.groups
        ]
        # The cache reads ride along, each numbered by its envelope's claim, up to
        # READ_WITH_CLAIM requests (whole messages): a call that claims a busy worker's
        # thousands of envelopes stays short, and their reads go out apart, side by side.
        # Only first deliveries' reads ride: a redelivery's claim (a take-over, a wait for a
        # live holder) is the one whose deadline matters most, so nothing slows it.
        requests: list[snapshot.SnapshotRequest] = []
        numbers: list[int] = []
        offset = 0
        for entry in waiting:
            asked = [
                (offset + index, request)
                for index, request in enumerate(() if entry.redelivered else entry.reads or ())
                if request is not None
            ]
            if len(requests) + len(asked) <= READ_WITH_CLAIM:
                numbers += [number for number, _ in asked]
                requests += [request for _, request in asked]
            offset += entry.size
        done, self._done = self._done, []
        try:
            won, found = await self._call(done, claims, (requests, numbers), answered)
        except BaseException as exc:
            self._done[:0] = done  # retried with the next call or flush
            for entry in waiting:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            if not isinstance(exc, redis_client.REDIS_ERRORS):
                raise
            return
        offset = 0
        for entry in waiting:
            if not entry.future.done():
                mine = {
                    number - offset: found[number]
                    for number in range(offset, offset + entry.size)
                    if found is not None and number in found
                }
                entry.future.set_result((won[offset : offset + entry.size], mine))
            offset += entry.size

    async def _call(
        self,
        done: list[_Group],
        claims: list[tuple[str, int, list[int]]],
        reads: tuple[list[snapshot.SnapshotRequest], list[int]] | None = None,
        answered: typing.Callable[[], None] | None = None,
    ) -> tuple[list[int], _Found]:
        """Write ``done``, make ``claims`` and, on one server, read ``reads`` (requests and
        their claims' numbers) in the same call; on a cluster nothing is read here.
        ``answered``: called once the script answered (on one server), before the claims a
        live holder has are looked into."""
        if not self._cluster:
            return await self._call_slot(done, claims, reads, answered)
        # One call per stream (one slot each), side by side; answers in the claims' order.
        streams = list(dict.fromkeys([p for p, _ in done] + [p for p, _, _ in claims]))
        answers = await asyncio.gather(
            *(
                self._call_slot(
                    [g for g in done if g[0] == stream], [c for c in claims if c[0] == stream]
                )
                for stream in streams
            )
        )
        by_stream = {
            stream: iter(answer) for stream, (answer, _) in zip(streams, answers, strict=True)
        }
        return [next(by_stream[prefix]) for prefix, _, seqs in claims for _ in seqs], None

    async def _call_slot(
        self,
        done: list[_Group],
        claims: list[tuple[str, int, list[int]]],
        reads: tuple[list[snapshot.SnapshotRequest], list[int]] | None = None,
        answered: typing.Callable[[], None] | None = None,
    ) -> tuple[list[int], _Found]:
        """One script call for streams of one slot (any streams on a single server)."""
        stream = done[0][0] if done else claims[0][0]
        args = [
            orjson.dumps(
                {
                    "h": self._holder, "p": _PROCESSING_TTL, "t": keys.DEDUPE_TTL,
                    "d": done, "c": claims,
                }
            )
        ]  # fmt: skip
        requests, numbers = reads if reads is not None and reads[0] else ([], [])
        if requests:
            try:
                asked = snapshot.argument(self._keys, requests)
                asked["n"] = [number + 1 for number in numbers]  # Lua counts from 1
                args.append(orjson.dumps(asked))
            except Exception:  # a bug here, never a reason to fail the claims
                self._read_failed("event cache read not asked with the claim", exc_info=True)
                requests, numbers = [], []
        answer = await self._script(keys=[stream], args=args)
        if answered is not None:
            answered()
        won, holders = answer[0], answer[1]
        codes = [int(code) for code in won]
        found: _Found = None
        if requests:
            found = self._read_answer(requests, numbers, codes, answer[2])
        held = iter(holders)
        keys_in_order = (f"{prefix}:{seq}" for prefix, _, seqs in claims for seq in seqs)
        for index, key in enumerate(keys_in_order):
            if codes[index] == _HELD:
                codes[index] = await self._held_elsewhere(key, next(held))
        return codes, found

    def _read_answer(
        self,
        requests: list[snapshot.SnapshotRequest],
        numbers: list[int],
        codes: list[int],
        answers: object,
    ) -> _Found:
        """The snapshots a claim call read: of the requests whose claim answered 1 or 3."""
        if not isinstance(answers, list):  # the read failed in the script; the claims stand
            self._read_failed("event cache not read with the claim")
            return None
        kept = [
            (number, request)
            for number, request in zip(numbers, requests, strict=True)
            if codes[number] in (_TAKE, _HELD)
        ]
        try:
            read = snapshot.snapshots([request for _, request in kept], answers)
        except Exception:  # a bug here, never a reason to hold the claims
            self._read_failed("event cache answer not understood", exc_info=True)
            return None
        return {number: found for (number, _), found in zip(kept, read, strict=True)}

    def _read_failed(self, what: str, *, exc_info: bool = False) -> None:
        """Counted every time (``shardline_worker_claim_reads_failed``); said at most once
        every ``_READ_FAILURE_LOG_EVERY``: the events are read on their own meanwhile."""
        self.reads_failed += 1
        now = self._clock.monotonic()
        if now - self._read_failure_logged_at >= _READ_FAILURE_LOG_EVERY:
            self._read_failure_logged_at = now
            _LOGGER.warning(
                "%s; read on its own", what, exc_info=exc_info, extra={"failed": self.reads_failed}
            )

    async def _held_elsewhere(self, key: str, held: bytes | str) -> int:
        """A redelivered copy found ``key`` claimed: wait while its holder lives, else take
        the claim over (if nobody changed it meanwhile)."""
        value = redis_client.text(held)
        holder = self._keys.dedupe_holder(value.removeprefix(_HOLDER_PREFIX))
        if await self._redis.exists(holder):
            return _WAIT
        if await self._take_over(keys=[key], args=[value, self._holder, _PROCESSING_TTL]):
            return _TAKE
        now = await self._redis.get(key)
        return _SKIP if now is None or redis_client.text(now) == "done" else _WAIT

    async def finish(
        self,
        done: typing.Sequence[envelope.EventEnvelope],
        failed: typing.Sequence[envelope.EventEnvelope],
    ) -> None:
        """Mark handled envelopes done (batched in the background); free failed ones now."""
        if done:
            self._done.extend(self._groups(done))
            if self._flusher is None:
                self._flusher = asyncio.get_running_loop().create_task(
                    self._flush_later(self.flush_every)
                )
        if failed:
            for item in failed:
                self._local.pop(item.dedupe_key, None)  # to be handled again when it comes back
            try:
                await self._redis.delete(*(self._keys.dedupe(item.dedupe_key) for item in failed))
            except redis_client.REDIS_ERRORS as exc:
                _LOGGER.warning(
                    "Redis unavailable: dedupe claim not released", extra={"error": str(exc)}
                )

    async def _flush_later(self, delay: float) -> None:
        await self._clock.sleep(delay)
        await self.flush()

    async def flush(self) -> None:
        """Write every pending "done" mark now, including those riding on claims in flight."""
        self._flusher = None
        if self._claims:
            await asyncio.wait(set(self._claims))
        done, self._done = self._done, []
        if not done:
            return
        try:
            await self._call(done, [])
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: dedupe marks kept for later", extra={"error": str(exc)}
            )
            self._keep_for_later(done)

    def _keep_for_later(self, done: list[_Group]) -> None:
        """Marks Redis did not take: offered again every ``_RETRY_MARKS_EVERY`` until it takes
        them (a replay after the outage must find them, on a replica with no traffic too); the
        oldest dropped past ``LOCAL_MEMORY``, and said so."""
        self._done[:0] = done
        count = sum(len(seqs) for _, seqs in self._done)
        dropped = 0
        while count > LOCAL_MEMORY and self._done:
            seqs = self._done.pop(0)[1]
            count -= len(seqs)
            dropped += len(seqs)
        if dropped:
            self.marks_dropped += dropped
            _LOGGER.warning(
                "Redis away too long: dedupe marks dropped (their events may run twice)",
                extra={"events": dropped},
            )
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_later(_RETRY_MARKS_EVERY)
            )
