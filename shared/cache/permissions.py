"""A member's permissions, computed as Discord documents it (Permissions overwrites).

Base permissions: the owner has every permission; otherwise @everyone's permissions OR the
member's roles'; ADMINISTRATOR grants everything. In a channel: @everyone's overwrite, then
the union of the member's role overwrites (deny first, then allow), then the member's own
overwrite. A member in timeout keeps only VIEW_CHANNEL and READ_MESSAGE_HISTORY.
"""

from __future__ import annotations

import dataclasses
import typing

import hikari

ALL: typing.Final[int] = int(hikari.Permissions.all_permissions())
ADMINISTRATOR: typing.Final[int] = int(hikari.Permissions.ADMINISTRATOR)
_TIMEOUT_KEEPS: typing.Final[int] = int(
    hikari.Permissions.VIEW_CHANNEL | hikari.Permissions.READ_MESSAGE_HISTORY
)


@dataclasses.dataclass(frozen=True, slots=True)
class Overwrite:
    id: int
    allow: int
    deny: int


def base_permissions(
    *,
    guild_id: int,
    owner_id: int,
    user_id: int,
    member_role_ids: typing.Iterable[int],
    role_permissions: typing.Mapping[int, int],
) -> int:
    if user_id == owner_id:
        return ALL
    permissions = role_permissions.get(guild_id, 0)  # @everyone has the guild's id
    for role_id in member_role_ids:
        permissions |= role_permissions.get(role_id, 0)
    if permissions & ADMINISTRATOR:
        return ALL
    return permissions


def channel_permissions(
    base: int,
    *,
    guild_id: int,
    user_id: int,
    member_role_ids: typing.Iterable[int],
    overwrites: typing.Mapping[int, Overwrite],
    timed_out: bool = False,
) -> int:
    if base & ADMINISTRATOR:
        return ALL
    permissions = base
    everyone = overwrites.get(guild_id)
    if everyone is not None:
        permissions &= ~everyone.deny
        permissions |= everyone.allow
    allow = deny = 0
    for role_id in member_role_ids:
        overwrite = overwrites.get(role_id)
        if overwrite is not None:
            allow |= overwrite.allow
            deny |= overwrite.deny
    permissions &= ~deny
    permissions |= allow
    own = overwrites.get(user_id)
    if own is not None:
        permissions &= ~own.deny
        permissions |= own.allow
    if timed_out:
        permissions &= _TIMEOUT_KEEPS
    return permissions
