"""tanjun's asynchronous cache interfaces (``tanjun.dependencies.async_cache``) on the worker's
Redis cache: what tanjun reads through them (its converters ``to_member``, ``to_channel``,
``to_guild``, ``to_user``, ``to_role``, ``to_voice_state``, its permission checks, the bot's own
user for ``mention_prefix``) comes from Redis instead of a REST call.

A miss raises ``CacheMissError`` (tanjun then asks REST), never ``EntryNotFound``: a key missing
from Redis is unknown, not absent from Discord. So does Redis not answering. Listing a whole
resource (``iter_all``) is not offered and raises ``CacheMissError`` too; a guild's roles are.
"""

from __future__ import annotations

import typing
import warnings

import hikari

from shared import redis_client

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # tanjun 2.17.7 at import, see tanjun.py
    from tanjun.dependencies import async_cache

if typing.TYPE_CHECKING:
    import tanjun

    from shared.cache import reader

__all__: typing.Sequence[str] = ("add_to_client",)

T = typing.TypeVar("T")
Fetch = typing.Callable[[], typing.Awaitable[T | None]]


async def _found(fetch: Fetch[T], default: typing.Any) -> typing.Any:
    """What ``fetch`` finds; else ``default`` when one was given; else a cache miss."""
    try:
        value = await fetch()
    except redis_client.REDIS_ERRORS:
        value = None  # Redis away: unknown, so tanjun asks REST
    if value is not None:
        return value
    if default is not ...:
        return default
    raise async_cache.CacheMissError


class _Unlisted(async_cache.CacheIterator[T]):
    """Listing a whole resource from Redis is not offered: a miss, so tanjun asks REST."""

    async def __anext__(self) -> T:
        raise async_cache.CacheMissError

    async def len(self) -> int:
        raise async_cache.CacheMissError


class _Listed(async_cache.CacheIterator[T]):
    """The items ``fetch`` lists, fetched once, on first use."""

    def __init__(self, fetch: typing.Callable[[], typing.Awaitable[list[T]]]) -> None:
        self._fetch = fetch
        self._items: list[T] | None = None

    async def _all(self) -> list[T]:
        if self._items is None:
            try:
                self._items = list(await self._fetch())
            except redis_client.REDIS_ERRORS:
                raise async_cache.CacheMissError from None
        return self._items

    async def __anext__(self) -> T:
        items = await self._all()
        if not items:
            raise StopAsyncIteration
        return items.pop(0)

    async def len(self) -> int:
        return len(await self._all())


class OwnUserCache(async_cache.SingleStoreCache[hikari.OwnUser]):
    """The bot's own user, as the worker fetched it at start (``bot.get_me()``)."""

    def __init__(self, me: typing.Callable[[], hikari.OwnUser | None]) -> None:
        self._me = me

    async def get(self, *, default: typing.Any = ...) -> typing.Any:
        async def fetch() -> hikari.OwnUser | None:
            return self._me()

        return await _found(fetch, default)


class GuildCache(async_cache.AsyncCache[hikari.Snowflakeish, hikari.Guild]):
    def __init__(self, cache: reader.CacheReader) -> None:
        self._cache = cache

    async def get(self, key: hikari.Snowflakeish, /, *, default: typing.Any = ...) -> typing.Any:
        return await _found(lambda: self._cache.get_guild(int(key)), default)

    def iter_all(self) -> async_cache.CacheIterator[hikari.Guild]:
        return _Unlisted()


class ChannelCache(async_cache.AsyncCache[hikari.Snowflakeish, hikari.PermissibleGuildChannel]):
    def __init__(self, cache: reader.CacheReader) -> None:
        self._cache = cache

    async def get(self, key: hikari.Snowflakeish, /, *, default: typing.Any = ...) -> typing.Any:
        async def fetch() -> hikari.PermissibleGuildChannel | None:
            channel = await self._cache.get_channel(int(key))
            return channel if isinstance(channel, hikari.PermissibleGuildChannel) else None

        return await _found(fetch, default)

    def iter_all(self) -> async_cache.CacheIterator[hikari.PermissibleGuildChannel]:
        return _Unlisted()


class ThreadCache(async_cache.AsyncCache[hikari.Snowflakeish, hikari.GuildThreadChannel]):
    def __init__(self, cache: reader.CacheReader) -> None:
        self._cache = cache

    async def get(self, key: hikari.Snowflakeish, /, *, default: typing.Any = ...) -> typing.Any:
        async def fetch() -> hikari.GuildThreadChannel | None:
            channel = await self._cache.get_channel(int(key))
            return channel if isinstance(channel, hikari.GuildThreadChannel) else None

        return await _found(fetch, default)

    def iter_all(self) -> async_cache.CacheIterator[hikari.GuildThreadChannel]:
        return _Unlisted()


class UserCache(async_cache.AsyncCache[hikari.Snowflakeish, hikari.User]):
    def __init__(self, cache: reader.CacheReader) -> None:
        self._cache = cache

    async def get(self, key: hikari.Snowflakeish, /, *, default: typing.Any = ...) -> typing.Any:
        return await _found(lambda: self._cache.get_user(int(key)), default)

    def iter_all(self) -> async_cache.CacheIterator[hikari.User]:
        return _Unlisted()


class MemberCache(async_cache.GuildBoundCache[hikari.Snowflakeish, hikari.Member]):
    def __init__(self, cache: reader.CacheReader) -> None:
        self._cache = cache

    async def get_from_guild(
        self,
        guild_id: hikari.Snowflakeish,
        key: hikari.Snowflakeish,
        /,
        *,
        default: typing.Any = ...,
    ) -> typing.Any:
        return await _found(lambda: self._cache.get_member(int(guild_id), int(key)), default)

    def iter_for_guild(
        self, guild_id: hikari.Snowflakeish, /
    ) -> async_cache.CacheIterator[hikari.Member]:
        del guild_id
        return _Unlisted()

    def iter_all(self) -> async_cache.CacheIterator[hikari.Member]:
        return _Unlisted()


class RoleCache(async_cache.GuildBoundCache[hikari.Snowflakeish, hikari.Role]):
    def __init__(self, cache: reader.CacheReader) -> None:
        self._cache = cache

    async def get_from_guild(
        self,
        guild_id: hikari.Snowflakeish,
        key: hikari.Snowflakeish,
        /,
        *,
        default: typing.Any = ...,
    ) -> typing.Any:
        return await _found(lambda: self._cache.get_role(int(guild_id), int(key)), default)

    def iter_for_guild(
        self, guild_id: hikari.Snowflakeish, /
    ) -> async_cache.CacheIterator[hikari.Role]:
        return _Listed(lambda: self._cache.get_roles(int(guild_id)))

    def iter_all(self) -> async_cache.CacheIterator[hikari.Role]:
        return _Unlisted()


class VoiceStateCache(async_cache.GuildBoundCache[hikari.Snowflakeish, hikari.VoiceState]):
    def __init__(self, cache: reader.CacheReader) -> None:
        self._cache = cache

    async def get_from_guild(
        self,
        guild_id: hikari.Snowflakeish,
        key: hikari.Snowflakeish,
        /,
        *,
        default: typing.Any = ...,
    ) -> typing.Any:
        return await _found(lambda: self._cache.get_voice_state(int(guild_id), int(key)), default)

    def iter_for_guild(
        self, guild_id: hikari.Snowflakeish, /
    ) -> async_cache.CacheIterator[hikari.VoiceState]:
        del guild_id
        return _Unlisted()

    def iter_all(self) -> async_cache.CacheIterator[hikari.VoiceState]:
        return _Unlisted()


def add_to_client(
    client: tanjun.Client,
    cache: reader.CacheReader,
    me: typing.Callable[[], hikari.OwnUser | None],
) -> None:
    """Give ``client`` the worker's Redis cache through tanjun's asynchronous interfaces."""
    dependencies: list[tuple[typing.Any, object]] = [
        (async_cache.SingleStoreCache[hikari.OwnUser], OwnUserCache(me)),
        (async_cache.SfCache[hikari.Guild], GuildCache(cache)),
        (async_cache.SfCache[hikari.PermissibleGuildChannel], ChannelCache(cache)),
        (async_cache.SfCache[hikari.GuildThreadChannel], ThreadCache(cache)),
        (async_cache.SfCache[hikari.User], UserCache(cache)),
        (async_cache.SfGuildBound[hikari.Member], MemberCache(cache)),
        (async_cache.SfGuildBound[hikari.Role], RoleCache(cache)),
        (async_cache.SfGuildBound[hikari.VoiceState], VoiceStateCache(cache)),
    ]
    for key, value in dependencies:
        if client.get_type_dependency(key, default=None) is None:  # the bot's own wins
            client.set_type_dependency(key, value)
