"""A member's permissions from the cached guild, roles and channel overwrites
(``shared.cache.permissions``, read through ``shared.cache.reader``)."""

from __future__ import annotations

import typing

import hikari
import pytest

from tests.shared.cache.conftest import Cache, guild_with


@pytest.fixture
async def permission_guild(cache: Cache) -> dict[str, typing.Any]:
    payload = guild_with(cache, members=0)
    guild_id = payload["id"]
    everyone = payload["roles"][0]
    everyone["permissions"] = str(
        int(hikari.Permissions.VIEW_CHANNEL | hikari.Permissions.SEND_MESSAGES)
    )
    roles = {
        "admin": {"id": "1001", "permissions": str(int(hikari.Permissions.ADMINISTRATOR))},
        "mod": {
            "id": "1002",
            "permissions": str(
                int(hikari.Permissions.KICK_MEMBERS | hikari.Permissions.MANAGE_MESSAGES)
            ),
        },
        "muted": {"id": "1003", "permissions": "0"},
    }
    for position, (name, role) in enumerate(roles.items(), 1):
        role.update(
            {
                "name": name,
                "color": 0,
                "hoist": False,
                "icon": None,
                "unicode_emoji": None,
                "position": position,
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }
        )
        payload["roles"].append(role)
    people = {}
    for name, role_ids in {
        "plain": [],
        "admin": ["1001"],
        "mod": ["1002"],
        "muted": ["1003"],
        "special": [],
    }.items():
        user = cache.world.add_user(name)
        payload["members"].append(
            {
                "user": user,
                "roles": role_ids,
                "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
            }
        )
        people[name] = int(user["id"])
    channel = payload["channels"][0]
    channel["permission_overwrites"] = [
        {
            "id": guild_id,
            "type": 0,
            "allow": "0",
            "deny": str(int(hikari.Permissions.SEND_MESSAGES)),
        },
        {"id": "1002", "type": 0, "allow": str(int(hikari.Permissions.SEND_MESSAGES)), "deny": "0"},
        {"id": "1003", "type": 0, "allow": "0", "deny": str(int(hikari.Permissions.VIEW_CHANNEL))},
        {
            "id": str(people["special"]),
            "type": 1,
            "allow": str(int(hikari.Permissions.SEND_MESSAGES | hikari.Permissions.ATTACH_FILES)),
            "deny": "0",
        },
    ]
    await cache.apply("GUILD_CREATE", payload)
    return {
        "guild_id": int(guild_id),
        "channel_id": int(channel["id"]),
        "owner": int(payload["owner_id"]),
        **people,
    }


async def test_permissions(cache: Cache, permission_guild: dict[str, typing.Any]) -> None:
    g, c = permission_guild["guild_id"], permission_guild["channel_id"]
    p = hikari.Permissions
    compute = cache.reader.member_permissions
    assert await compute(g, permission_guild["owner"], c) == p.all_permissions()
    assert await compute(g, permission_guild["admin"], c) == p.all_permissions()
    assert await compute(g, permission_guild["plain"]) == p.VIEW_CHANNEL | p.SEND_MESSAGES
    # @everyone overwrite denies sending in the channel...
    assert await compute(g, permission_guild["plain"], c) == p.VIEW_CHANNEL
    # ...a role overwrite allows it back...
    assert (
        await compute(g, permission_guild["mod"], c)
        == p.VIEW_CHANNEL | p.SEND_MESSAGES | p.KICK_MEMBERS | p.MANAGE_MESSAGES
    )
    # ...a role overwrite can hide the channel...
    assert not (await compute(g, permission_guild["muted"], c) or p.NONE) & p.VIEW_CHANNEL
    # ...and the member's own overwrite comes last.
    assert (
        await compute(g, permission_guild["special"], c)
        == p.VIEW_CHANNEL | p.SEND_MESSAGES | p.ATTACH_FILES
    )
    assert await compute(g, 12345, c) is None, "unknown member"
    roles = await cache.reader.get_member_roles(g, permission_guild["mod"])
    assert sorted(r.name for r in roles) == ["@everyone", "mod"]


async def test_a_timed_out_member_keeps_only_view_and_history(
    cache: Cache, permission_guild: dict[str, typing.Any]
) -> None:
    g, c = permission_guild["guild_id"], permission_guild["channel_id"]
    user = await cache.reader.user_json(permission_guild["mod"])
    future = "2999-01-01T00:00:00+00:00"
    await cache.apply(
        "GUILD_MEMBER_UPDATE",
        {
            "guild_id": str(g),
            "user": user,
            "roles": ["1002"],
            "joined_at": "2024-01-01T00:00:00+00:00",
            "communication_disabled_until": future,
        },
    )
    assert (
        await cache.reader.member_permissions(g, permission_guild["mod"], c)
        == hikari.Permissions.VIEW_CHANNEL
    )
