"""Reading the cache: a read-through fetch never writes into what the gateway owns
(``shared.cache.reader``)."""

from __future__ import annotations

import typing

from tests.shared.cache.conftest import Cache, guild_with


async def test_read_through_never_overwrites_gateway_data(cache: Cache) -> None:
    payload = guild_with(cache)
    guild_id = int(payload["id"])
    await cache.apply("GUILD_CREATE", payload)
    known = payload["members"][0]
    calls = []

    async def fetch() -> dict[str, typing.Any]:
        calls.append(1)
        return {**known, "nick": "from REST"}

    got = await cache.reader.member_json_or_fetched(guild_id, int(known["user"]["id"]), fetch)
    assert got is not None
    assert got["nick"] is None, "gateway data wins"
    assert calls == []
    stranger = {"user": {"id": "999", "username": "x"}, "roles": [], "nick": "rest"}

    async def fetch_stranger() -> dict[str, typing.Any]:
        calls.append(1)
        return stranger

    assert await cache.reader.member_json_or_fetched(guild_id, 999, fetch_stranger) == stranger
    assert await cache.reader.member_json_or_fetched(guild_id, 999, fetch_stranger) == stranger
    assert calls == [1], "fetched once, then remembered"
    assert await cache.reader.get_member(guild_id, 999) is None, "never written into gateway data"
