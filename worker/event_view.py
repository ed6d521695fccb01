"""Event helpers that work: what hikari's ``get_*`` helpers need, read before listeners run.

The consumer asks once per broker message, and one Redis round trip reads what each of its
events names (:func:`request_for`), for the other messages that arrived with it too
(:class:`Reads`); and :func:`handling` makes that the
``app.cache`` of every hikari model while the event's listeners run. hikari's models and events
hold an :class:`EventApp` as their ``app``: the bot for everything (``event.app.rest``, the
bot's own attributes), except that its ``cache`` is the synchronous ``cache_view.EventCache``. The
bot's own ``bot.cache`` stays the asynchronous Redis reader.

A Redis failure or a missed deadline while reading gives empty snapshots: helpers answer
``None`` and the events are still handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import typing

from shared import redis_client, voice
from shared.cache import snapshot
from worker import cache_view

if typing.TYPE_CHECKING:
    import concurrent.futures

    import hikari

    from shared import envelope
    from shared.cache import reader

__all__: typing.Sequence[str] = ("EventApp", "Reads", "handling", "read", "request_for")

_LOGGER = logging.getLogger("shardline.worker.event_view")
#: Users (authors, members, mentions) read per event at most; a message mentioning more has
#: the rest "not cached".
MAX_USERS: typing.Final = 10
#: Channels, roles, emojis and messages read per event at most, each.
MAX_IDS: typing.Final = 25
#: A guild's own events name it by ``id``.
_GUILD_OWN: typing.Final = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})
#: A channel's and a thread's own events name it by ``id``.
_CHANNEL_OWN: typing.Final = frozenset(
    {
        "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE",
        "THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE",
    }
)  # fmt: skip
#: Events about one message named by ``id`` (Gateway Events "Message Update/Delete").
_MESSAGE_OWN: typing.Final = frozenset({"MESSAGE_UPDATE", "MESSAGE_DELETE"})


#: Snowflakes are 64-bit unsigned integers (Reference "Snowflakes").
_SNOWFLAKE_END: typing.Final = 1 << 64


class _Ids:
    """Snowflakes in the order met, each once, at most ``limit``; anything else ignored."""

    __slots__ = ("items", "limit")

    def __init__(self, limit: int) -> None:
        self.items: list[int] = []
        self.limit = limit

    def add(self, value: object) -> None:
        if (
            isinstance(value, str)
            and value.isascii()
            and value.isdigit()
            and len(self.items) < self.limit
        ):
            number = int(value)
            if number < _SNOWFLAKE_END and number not in self.items:
                self.items.append(number)

    def add_all(self, values: object) -> None:
        if isinstance(values, list):
            for value in values:
                self.add(value)


def _field(value: object, name: str) -> object:
    return value.get(name) if isinstance(value, dict) else None


def request_for(name: str, d: object) -> snapshot.SnapshotRequest | None:
    """What the dispatch ``name`` with payload ``d`` names, for its helpers (None: nothing).

    Gateway Events: messages carry ``author``, ``member`` (with ``roles``), ``mentions`` and
    ``mention_roles``; typing, reactions and voice states ``user_id`` and ``member``;
    member and presence events ``user``; interactions ``member.user`` or ``user``."""
    if not isinstance(d, dict) or name.startswith(voice.EVENT_PREFIX):
        return None
    guild = _Ids(1)
    guild.add(d.get("id") if name in _GUILD_OWN else d.get("guild_id"))
    users, channels, roles = _Ids(MAX_USERS), _Ids(MAX_IDS), _Ids(MAX_IDS)
    emojis, messages = _Ids(MAX_IDS), _Ids(MAX_IDS)
    member = d.get("member")
    for user in (d.get("author"), d.get("user"), _field(member, "user")):
        users.add(_field(user, "id"))
    users.add(d.get("user_id"))
    mentions = d.get("mentions")
    for mentioned in mentions if isinstance(mentions, list) else ():
        users.add(_field(mentioned, "id"))
    roles.add_all(_field(member, "roles"))
    roles.add_all(d.get("mention_roles"))
    if name.startswith("GUILD_MEMBER"):
        roles.add_all(d.get("roles"))
    roles.add(d.get("role_id"))
    roles.add(_field(d.get("role"), "id"))
    if name in _CHANNEL_OWN:
        channels.add(d.get("id"))
    channels.add(d.get("channel_id"))
    channels.add(d.get("parent_id"))
    emojis.add(_field(d.get("emoji"), "id"))
    if name in _MESSAGE_OWN:
        messages.add(d.get("id"))
    messages.add(d.get("message_id"))
    if name == "MESSAGE_DELETE_BULK":
        messages.add_all(d.get("ids"))
    channel_id = channels.items[0] if channels.items and "channel_id" in d else None
    if not (guild.items or users.items or channels.items):
        return None
    return snapshot.SnapshotRequest(
        guild_id=guild.items[0] if guild.items else None,
        user_ids=tuple(users.items),
        channel_ids=tuple(channels.items),
        role_ids=tuple(roles.items),
        emoji_ids=tuple(emojis.items),
        messages=() if channel_id is None else tuple((channel_id, m) for m in messages.items),
    )


class ReadStats:
    """What :func:`read` did: round trips, events given a snapshot, reads that failed."""

    __slots__ = ("events", "failures", "round_trips")

    def __init__(self) -> None:
        self.round_trips = 0
        self.events = 0
        self.failures = 0


STATS: typing.Final = ReadStats()


def _requests(
    items: typing.Sequence[envelope.EventEnvelope],
) -> list[snapshot.SnapshotRequest | None] | None:
    try:
        return [request_for(item.t, item.d) for item in items]
    except Exception:
        # A payload this module cannot read is a bug here, never a reason to hold the events.
        STATS.failures += 1
        _LOGGER.exception("event cache not read; helpers answer None")
        return None


async def _snapshots(
    cache: reader.CacheReader, wanted: list[snapshot.SnapshotRequest]
) -> list[snapshot.Snapshot] | None:
    """One script call; None when it failed (the breaker's deadline bounds the wait)."""
    try:
        STATS.round_trips += 1
        found = await cache.snapshots(wanted)
    except redis_client.REDIS_ERRORS as exc:
        STATS.failures += 1
        _LOGGER.warning("event cache not read; helpers answer None", extra={"error": repr(exc)})
        return None
    except Exception:
        STATS.failures += 1
        _LOGGER.exception("event cache not read; helpers answer None")
        return None
    STATS.events += len(wanted)
    return found


def _entities(
    requests: list[snapshot.SnapshotRequest | None], found: list[snapshot.Snapshot] | None
) -> list[cache_view.Entities]:
    if found is None:
        return [_NOTHING] * len(requests)
    got = iter(found)
    return [_NOTHING if r is None else cache_view.Entities(next(got)) for r in requests]


#: An event nothing was read for (shared: an empty snapshot builds nothing to remember).
_NOTHING: typing.Final = cache_view.Entities(snapshot.EMPTY)


async def read(
    cache: reader.CacheReader | None, items: typing.Sequence[envelope.EventEnvelope]
) -> list[cache_view.Entities]:
    """The entities of each of ``items``, from one round trip (empty when Redis fails)."""
    requests = None if cache is None else _requests(items)
    if cache is None or requests is None:
        return [_NOTHING] * len(items)
    wanted = [r for r in requests if r is not None]
    return _entities(requests, await _snapshots(cache, wanted) if wanted else [])


_Answer = asyncio.Future[list[snapshot.Snapshot] | None]
#: Events read by one script call at most (the reads of more go in calls side by side).
MAX_PER_CALL: typing.Final = 200


class Reads:
    """Reads asked for in one turn of the event loop share one script call.

    Messages that arrive together resume together (after their dedupe claim, itself shared):
    one-event messages then cost a fraction of a round trip each, as batched ones do."""

    __slots__ = ("_flushes", "_pending")

    def __init__(self) -> None:
        self._pending: list[tuple[list[snapshot.SnapshotRequest], _Answer]] = []
        #: Script calls under way, each owned here until it ends.
        self._flushes: set[asyncio.Task[None]] = set()

    async def read(
        self,
        cache: reader.CacheReader | None,
        items: typing.Sequence[envelope.EventEnvelope],
        requests: list[snapshot.SnapshotRequest | None] | None = None,
    ) -> list[cache_view.Entities]:
        """``requests``: what to read for each of ``items``, when already known."""
        if cache is not None and requests is None:
            requests = _requests(items)
        if cache is None or requests is None:
            return [_NOTHING] * len(items)
        wanted = [r for r in requests if r is not None]
        if not wanted:
            return [_NOTHING] * len(items)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[snapshot.Snapshot] | None] = loop.create_future()
        self._pending.append((wanted, future))
        if len(self._pending) == 1:
            # Runs after this turn: every read asked for until then rides along.
            task = loop.create_task(self._flush(cache))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return _entities(requests, await future)

    async def _flush(self, cache: reader.CacheReader) -> None:
        pending, self._pending = self._pending, []
        # A busy worker asks for thousands at once: calls of a bounded size, side by side, so
        # that none holds Redis, or its reply the loop, for long.
        calls: list[list[tuple[list[snapshot.SnapshotRequest], _Answer]]] = [[]]
        size = 0
        for entry in pending:
            if size and size + len(entry[0]) > MAX_PER_CALL:
                calls.append([])
                size = 0
            calls[-1].append(entry)
            size += len(entry[0])
        await asyncio.gather(*(self._call(cache, part) for part in calls))

    @staticmethod
    async def _call(
        cache: reader.CacheReader, part: list[tuple[list[snapshot.SnapshotRequest], _Answer]]
    ) -> None:
        found = await _snapshots(cache, [r for wanted, _ in part for r in wanted])
        start = 0
        for wanted, future in part:
            if not future.done():  # its handler may have been cancelled meanwhile
                future.set_result(None if found is None else found[start : start + len(wanted)])
            start += len(wanted)


@contextlib.contextmanager
def handling(entities: cache_view.Entities) -> typing.Iterator[None]:
    """``entities`` answer ``app.cache`` here (and in tasks started from here)."""
    token = cache_view.CURRENT.set(entities)
    try:
        yield
    finally:
        cache_view.CURRENT.reset(token)


class _Bot(typing.Protocol):
    @property
    def rest(self) -> hikari.api.RESTClient: ...
    @property
    def entity_factory(self) -> hikari.api.EntityFactory: ...
    @property
    def http_settings(self) -> hikari.api.HTTPSettings: ...
    @property
    def proxy_settings(self) -> hikari.api.ProxySettings: ...
    @property
    def cache(self) -> reader.CacheReader | None: ...


class EventApp:
    """The ``app`` hikari's events and models hold: the bot, with a synchronous ``cache``.

    hikari's factories and models need ``rest``, ``entity_factory``, ``executor``,
    ``http_settings`` and ``proxy_settings`` (``hikari.RESTAware``) and, for their helpers,
    ``cache`` (``hikari.CacheAware``); every other attribute is the bot's."""

    __slots__ = ("_bot", "_reads", "cache", "prefetch", "read_with_claim")

    def __init__(self, bot: object) -> None:
        self._bot = typing.cast("_Bot", bot)
        self.cache: hikari.api.Cache = cache_view.EventCache(self)
        #: Read what each event names before its listeners run (one round trip per broker
        #: message; docs/benchmarks.md has its cost). Off, every helper answers None: for a bot
        #: whose listeners use only ``await bot.cache...``.
        self.prefetch = True
        #: Read in the dedupe claim's round trip (on one server); off, in one of its own
        #: (docs/benchmarks.md has the A/B).
        self.read_with_claim = True
        self._reads = Reads()

    def requests(
        self, items: typing.Sequence[envelope.EventEnvelope]
    ) -> list[snapshot.SnapshotRequest | None] | None:
        """What to read for each of ``items`` (None: nothing is read), for a dedupe claim
        to read in its own round trip. The claim reads with the deduplicator's Redis and key
        schema: the same client and keys as ``bot.cache`` (``worker.app`` attaches both)."""
        if not self.prefetch or not self.read_with_claim or self._bot.cache is None:
            return None
        # A payload that cannot be read is counted once and read by no one (helpers answer
        # None), not asked again by the read apart.
        return _requests(items) or [None] * len(items)

    async def read(
        self,
        items: typing.Sequence[envelope.EventEnvelope],
        found: typing.Mapping[int, snapshot.Snapshot] | None = None,
        requests: typing.Mapping[int, snapshot.SnapshotRequest | None] | None = None,
    ) -> list[cache_view.Entities]:
        """What each of ``items`` names, for hikari's helpers while its listeners run:
        ``found`` (by ``id()`` of an item) as read with its claim, the rest read now
        (``requests``, by ``id()`` of an item: what :meth:`requests` asked for it)."""
        cache = self._bot.cache if self.prefetch else None
        found = found or {}
        missing = [item for item in items if id(item) not in found]
        asked = None if requests is None else [requests[id(item)] for item in missing]
        if not found or cache is None:
            return await self._reads.read(cache, items, asked)
        STATS.events += len(found)
        read = iter(await self._reads.read(cache, missing, asked) if missing else ())
        return [
            cache_view.Entities(found[id(item)]) if id(item) in found else next(read)
            for item in items
        ]

    @property
    def rest(self) -> hikari.api.RESTClient:
        return self._bot.rest

    @property
    def entity_factory(self) -> hikari.api.EntityFactory:
        return self._bot.entity_factory

    @property
    def executor(self) -> concurrent.futures.Executor | None:
        return None

    @property
    def http_settings(self) -> hikari.api.HTTPSettings:
        return self._bot.http_settings

    @property
    def proxy_settings(self) -> hikari.api.ProxySettings:
        return self._bot.proxy_settings

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._bot, name)
