"""The ``data`` of an APPLICATION_COMMAND interaction, as Discord builds it: the options the
user gave with the objects they name in ``resolved``, or a context-menu command's
``target_id`` with its target.

Receiving and Responding > Interaction Object > Application Command Data Structure
(``resolved``: "converted users + roles + channels + attachments"; ``target_id``: "id of the
user or message targeted by a user or message command") and Resolved Data Structure:

* ``members``: "Partial Member objects are missing user, deaf and mute fields" (and carry
  ``permissions``, the member's in the channel), alongside the matching ``users``;
* ``channels``: "Partial Channel objects only have id, name, type and permissions fields.
  Threads will also have thread_metadata and parent_id fields";
* ``roles``, ``messages`` (partial messages: here the stored message) and ``attachments``.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from playground.discord import world as world_module

Json = dict[str, typing.Any]

#: Application Command Option Type: USER 6, CHANNEL 7, ROLE 8, MENTIONABLE 9, ATTACHMENT 11.
_USER, _CHANNEL, _ROLE, _MENTIONABLE, _ATTACHMENT = 6, 7, 8, 9, 11
_SUBCOMMANDS: typing.Final = frozenset({1, 2})


class Resolver:
    """Collects the ``resolved`` objects of one interaction in a guild channel."""

    def __init__(
        self,
        world: world_module.World,
        guild_id: int,
        channel_id: int,
        uploads: typing.Mapping[int, Json],
    ) -> None:
        self._world = world
        self._guild_id = guild_id
        self._channel_id = channel_id
        self._uploads = uploads
        self.resolved: Json = {}

    def _put(self, kind: str, object_id: int, value: Json) -> None:
        self.resolved.setdefault(kind, {})[str(object_id)] = value

    def user(self, user_id: int) -> bool:
        user = self._world.users.get(user_id)
        if user is None:
            return False
        self._put("users", user_id, user)
        member = self._world.members.get(self._guild_id, {}).get(user_id)
        if member is not None:
            partial = {k: v for k, v in member.items() if k not in ("user", "deaf", "mute")}
            partial["permissions"] = self._world.member_permissions(
                self._guild_id, user_id, self._channel_id
            )
            self._put("members", user_id, partial)
        return True

    def role(self, role_id: int) -> bool:
        roles = self._world.guilds[self._guild_id].get("roles", ())
        role = next((r for r in roles if int(r["id"]) == role_id), None)
        if role is not None:
            self._put("roles", role_id, role)
        return role is not None

    def channel(self, channel_id: int) -> bool:
        channel = self._world.channels.get(channel_id)
        if channel is None:
            return False
        partial: Json = {k: channel[k] for k in ("id", "name", "type") if k in channel}
        partial["permissions"] = self._world.member_permissions(
            self._guild_id, self._world.bot_id, channel_id
        )
        for key in ("thread_metadata", "parent_id"):
            if key in channel and channel["type"] in (10, 11, 12):  # threads
                partial[key] = channel[key]
        self._put("channels", channel_id, partial)
        return True

    def attachment(self, attachment_id: int) -> bool:
        upload = self._uploads.get(attachment_id)
        if upload is not None:
            self._put("attachments", attachment_id, upload)
        return upload is not None

    def message(self, message_id: int) -> bool:
        message = self._world.messages.get(self._channel_id, {}).get(message_id)
        if message is not None:
            self._put("messages", message_id, message)
        return message is not None

    def options(self, options: list[Json]) -> None:
        """Resolve what each option names (an unknown id is Discord's problem, not the user's:
        the client only offers existing objects, so it raises here)."""
        for option in options:
            kind, value = option.get("type"), option.get("value")
            if kind in _SUBCOMMANDS:
                self.options(option.get("options") or [])
                continue
            lookups: dict[int, tuple[typing.Callable[[int], bool], ...]] = {
                _USER: (self.user,), _CHANNEL: (self.channel,), _ROLE: (self.role,),
                _MENTIONABLE: (self.user, self.role), _ATTACHMENT: (self.attachment,),
            }  # fmt: skip
            wanted = lookups.get(int(kind or 0), ())
            if wanted and not any(lookup(int(str(value))) for lookup in wanted):
                raise ValueError(f"option {option.get('name')!r}: nothing with id {value}")


def command_data(
    resolver: Resolver, command_id: int, name: str, options: list[Json] | None
) -> Json:
    """A CHAT_INPUT command's data, with ``resolved`` when an option names an object."""
    given = options or []
    resolver.options(given)
    data: Json = {"id": str(command_id), "name": name, "type": 1, "options": given}
    if resolver.resolved:
        data["resolved"] = resolver.resolved
    return data


def menu_data(resolver: Resolver, command_id: int, name: str, kind: int, target_id: int) -> Json:
    """A USER (2) or MESSAGE (3) command's data: its target, resolved."""
    found = resolver.user(target_id) if kind == 2 else resolver.message(target_id)
    if not found:
        raise ValueError(f"no {'user' if kind == 2 else 'message'} {target_id} to target")
    return {
        "id": str(command_id),
        "name": name,
        "type": kind,
        "target_id": str(target_id),
        "resolved": resolver.resolved,
    }
