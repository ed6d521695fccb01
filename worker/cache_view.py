"""hikari's synchronous cache API over what was read for the event being handled.

hikari's helpers (``event.get_guild()``, ``event.get_member()``, ``member.get_roles()``,
``guild.get_role(id)`` ...) call ``app.cache.get_*`` and expect an answer at once. The cache is
in Redis, so the consumer reads, in one round trip per broker message, what each event names
(:mod:`shared.cache.snapshot`) and sets it as :data:`CURRENT` while the event's listeners run.
:class:`EventCache` answers from that snapshot: the model when it was read, ``None`` ("not
cached", as hikari documents) when it was not. It never blocks and never returns a coroutine.

As in hikari's own cache, threads are apart from guild channels: ``get_thread(id)`` answers for
a thread (a message in one: ``event.get_channel()`` is ``None``, ``cache.get_thread(
event.channel_id)`` the thread), ``get_guild_channel(thread.parent_id)`` for its parent.

Views over a whole guild (``guild.get_channels()``, ``get_members()``...) are empty: a guild's
hundreds of channels or thousands of members are not read per event. ``guild.get_roles()``
answers when the guild has few roles (``snapshot.ALL_ROLES_UP_TO``). For everything else the
bot's asynchronous ``bot.cache`` reads Redis on demand.
"""

from __future__ import annotations

import contextvars
import logging
import typing

import hikari
import orjson
from hikari.impl import config as hikari_config

from shared.cache import codec, snapshot

if typing.TYPE_CHECKING:
    from hikari.api import entity_factory as entity_factory_api

__all__: typing.Sequence[str] = ("CURRENT", "Entities", "EventCache", "current")

_LOGGER = logging.getLogger("shardline.worker.cache_view")
_K = typing.TypeVar("_K", bound=typing.Hashable)
_V = typing.TypeVar("_V")
_T = typing.TypeVar("_T")


class _View(hikari.api.CacheView[_K, _V]):
    """An immutable mapping, as hikari's cache views are."""

    __slots__ = ("_items",)

    def __init__(self, items: typing.Mapping[_K, _V] | None = None) -> None:
        self._items: dict[_K, _V] = dict(items or {})

    def __getitem__(self, key: _K) -> _V:
        return self._items[key]

    def __iter__(self) -> typing.Iterator[_K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @typing.overload
    def get_item_at(self, index: int, /) -> _V: ...

    @typing.overload
    def get_item_at(self, index: slice, /) -> typing.Sequence[_V]: ...

    def get_item_at(self, index: slice | int, /) -> _V | typing.Sequence[_V]:
        return list(self._items.values())[index]


class Entities:
    """One event's snapshot and the models built from it so far (each built once, on use)."""

    __slots__ = ("_models", "snapshot")

    def __init__(self, read: snapshot.Snapshot) -> None:
        self.snapshot = read
        self._models: dict[tuple[str, int], typing.Any] = {}

    def model(self, kind: str, key: int, build: typing.Callable[[], _T | None]) -> _T | None:
        found = self._models.get((kind, key), self)
        if found is self:
            try:
                found = build()
            except (KeyError, TypeError, ValueError, hikari.UnrecognisedEntityError) as exc:
                # Stored data hikari cannot read: as hikari's own cache would not hold it.
                _LOGGER.warning(
                    "cached entity not readable", extra={"kind": kind, "error": repr(exc)}
                )
                found = None
            self._models[(kind, key)] = found
        return typing.cast("_T | None", found)


#: The entities of the event whose listeners run in this context.
CURRENT: typing.Final[contextvars.ContextVar[Entities]] = contextvars.ContextVar(
    "shardline_event_entities"
)
#: Outside an event: nothing read, nothing cached.
_OUTSIDE: typing.Final = Entities(snapshot.EMPTY)


def current() -> Entities:
    return CURRENT.get(_OUTSIDE)


def _id(value: typing.Any) -> int:
    """A snowflake, or an object with one (hikari's ``SnowflakeishOr``)."""
    return int(value) if isinstance(value, int | str) else int(value.id)


def _json(raw: bytes) -> dict[str, typing.Any]:
    return typing.cast("dict[str, typing.Any]", orjson.loads(raw))


class EventCache(hikari.api.Cache):
    """``hikari.api.Cache`` answered from the current event's snapshot (:data:`CURRENT`)."""

    __slots__ = ("_app", "_settings")

    def __init__(self, app: hikari.RESTAware) -> None:
        self._app = app  # its entity factory builds the models (they hold it as their app)
        self._settings = hikari_config.CacheSettings()

    @property
    def _factory(self) -> entity_factory_api.EntityFactory:
        return self._app.entity_factory

    @property
    def settings(self) -> hikari.api.CacheSettings:
        return self._settings

    # --- what an event's snapshot holds -------------------------------------------------------

    def _guild(self, guild: typing.Any, *, unavailable: bool | None) -> hikari.GatewayGuild | None:
        entities = current()
        read = entities.snapshot
        guild_id = _id(guild)
        if read.guild_id != guild_id or read.guild is None:
            return None
        if unavailable is not None and read.unavailable != unavailable:
            return None
        raw = read.guild
        return entities.model(
            "guild",
            guild_id,
            lambda: self._factory.deserialize_gateway_guild(
                _json(raw), user_id=hikari.Snowflake(0)
            ).guild(),
        )

    def get_guild(self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /) -> hikari.GatewayGuild | None:  # fmt: skip  # noqa: E501 - hikari's signature
        return self._guild(guild, unavailable=None)

    def get_available_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.GatewayGuild | None:
        return self._guild(guild, unavailable=False)

    def get_unavailable_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.GatewayGuild | None:
        return self._guild(guild, unavailable=True)

    def _channel(self, channel_id: int) -> hikari.PartialChannel | None:
        entities = current()
        read = entities.snapshot
        raw = read.channels.get(channel_id)
        if raw is None or read.guild_id is None:
            return None
        guild_id = hikari.Snowflake(read.guild_id)

        def build() -> hikari.PartialChannel:
            payload = _json(raw)
            payload.setdefault("guild_id", str(guild_id))
            return self._factory.deserialize_channel(payload, guild_id=guild_id)

        return entities.model("channel", channel_id, build)

    def get_guild_channel(
        self, channel: hikari.SnowflakeishOr[hikari.PartialChannel], /
    ) -> hikari.PermissibleGuildChannel | None:
        found = self._channel(_id(channel))
        # hikari's cache keeps threads apart: they are not permissible guild channels.
        return found if isinstance(found, hikari.PermissibleGuildChannel) else None

    def get_thread(
        self, thread: hikari.SnowflakeishOr[hikari.PartialChannel], /
    ) -> hikari.GuildThreadChannel | None:
        found = self._channel(_id(thread))
        return found if isinstance(found, hikari.GuildThreadChannel) else None

    def _user_json(self, user_id: int) -> dict[str, typing.Any] | None:
        raw = current().snapshot.users.get(user_id)
        return None if raw is None else codec.decode_user(user_id, raw)

    def get_user(self, user: hikari.SnowflakeishOr[hikari.PartialUser], /) -> hikari.User | None:
        user_id = _id(user)
        payload = self._user_json(user_id)
        if payload is None:
            return None
        return current().model("user", user_id, lambda: self._factory.deserialize_user(payload))

    def _member_json(self, guild_id: int, user_id: int) -> dict[str, typing.Any] | None:
        read = current().snapshot
        packed = read.members.get(user_id)
        if read.guild_id != guild_id or packed is None:
            return None
        member = codec.decode_member(packed)
        # As the cache reader does: members are kept apart from the users they belong to.
        member["user"] = self._user_json(user_id) or {
            "id": str(user_id), "username": "", "discriminator": "0", "avatar": None
        }  # fmt: skip
        return member

    def get_member(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        user: hikari.SnowflakeishOr[hikari.PartialUser],
        /,
    ) -> hikari.Member | None:
        guild_id, user_id = _id(guild), _id(user)
        payload = self._member_json(guild_id, user_id)
        if payload is None:
            return None
        return current().model(
            "member",
            user_id,
            lambda: self._factory.deserialize_member(payload, guild_id=hikari.Snowflake(guild_id)),
        )

    def _role(self, role_id: int) -> hikari.Role | None:
        entities = current()
        read = entities.snapshot
        raw = read.roles.get(role_id)
        if raw is None or read.guild_id is None:
            return None
        guild_id = hikari.Snowflake(read.guild_id)
        return entities.model(
            "role", role_id, lambda: self._factory.deserialize_role(_json(raw), guild_id=guild_id)
        )

    def get_role(self, role: hikari.SnowflakeishOr[hikari.PartialRole], /) -> hikari.Role | None:
        return self._role(_id(role))

    def get_roles_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.Role]:
        read = current().snapshot
        if read.guild_id != _id(guild) or not read.all_roles:
            return _View()
        roles = {hikari.Snowflake(i): self._role(i) for i in read.roles}
        return _View({k: v for k, v in roles.items() if v is not None})

    def get_emoji(
        self, emoji: hikari.SnowflakeishOr[hikari.CustomEmoji], /
    ) -> hikari.KnownCustomEmoji | None:
        entities = current()
        read = entities.snapshot
        emoji_id = _id(emoji)
        raw = read.emojis.get(emoji_id)
        if raw is None or read.guild_id is None:
            return None
        guild_id = hikari.Snowflake(read.guild_id)
        return entities.model(
            "emoji",
            emoji_id,
            lambda: self._factory.deserialize_known_custom_emoji(_json(raw), guild_id=guild_id),
        )

    def get_voice_state(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        user: hikari.SnowflakeishOr[hikari.PartialUser],
        /,
    ) -> hikari.VoiceState | None:
        guild_id, user_id = _id(guild), _id(user)
        raw = current().snapshot.voice_states.get(user_id)
        member = self.get_member(guild_id, user_id)
        if raw is None or member is None:
            return None
        payload = {**_json(raw), "guild_id": str(guild_id), "user_id": str(user_id)}
        return current().model(
            "voice",
            user_id,
            lambda: self._factory.deserialize_voice_state(
                payload, guild_id=hikari.Snowflake(guild_id), member=member
            ),
        )

    def get_presence(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        user: hikari.SnowflakeishOr[hikari.PartialUser],
        /,
    ) -> hikari.MemberPresence | None:
        guild_id, user_id = _id(guild), _id(user)
        read = current().snapshot
        raw = read.presences.get(user_id)
        if raw is None or read.guild_id != guild_id:
            return None
        payload = {**_json(raw), "user": {"id": str(user_id)}}
        return current().model(
            "presence",
            user_id,
            lambda: self._factory.deserialize_member_presence(
                payload, guild_id=hikari.Snowflake(guild_id)
            ),
        )

    def get_message(
        self, message: hikari.SnowflakeishOr[hikari.PartialMessage], /
    ) -> hikari.Message | None:
        message_id = _id(message)
        raw = current().snapshot.messages.get(message_id)
        if raw is None:
            return None
        return current().model(
            "message", message_id, lambda: self._factory.deserialize_message(_json(raw))
        )

    # --- not read per event: "not cached" -----------------------------------------------------

    def get_me(self) -> hikari.OwnUser | None:
        return None

    def get_dm_channel_id(
        self, user: hikari.SnowflakeishOr[hikari.PartialUser], /
    ) -> hikari.Snowflake | None:
        del user
        return None

    def get_sticker(
        self, sticker: hikari.SnowflakeishOr[hikari.GuildSticker], /
    ) -> hikari.GuildSticker | None:
        del sticker
        return None

    def get_invite(self, code: hikari.InviteCode | str, /) -> hikari.InviteWithMetadata | None:
        del code
        return None

    def get_dm_channel_ids_view(self) -> hikari.api.CacheView[hikari.Snowflake, hikari.Snowflake]:
        return _View()

    def get_emojis_view(self) -> hikari.api.CacheView[hikari.Snowflake, hikari.KnownCustomEmoji]:
        return _View()

    def get_emojis_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.KnownCustomEmoji]:
        del guild
        return _View()

    def get_stickers_view(self) -> hikari.api.CacheView[hikari.Snowflake, hikari.GuildSticker]:
        return _View()

    def get_stickers_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.GuildSticker]:
        del guild
        return _View()

    def get_guilds_view(self) -> hikari.api.CacheView[hikari.Snowflake, hikari.GatewayGuild]:
        return _View()

    def get_available_guilds_view(
        self,
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.GatewayGuild]:
        return _View()

    def get_unavailable_guilds_view(
        self,
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.GatewayGuild]:
        return _View()

    def get_guild_channels_view(
        self,
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.PermissibleGuildChannel]:
        return _View()

    def get_guild_channels_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.PermissibleGuildChannel]:
        del guild
        return _View()

    def get_threads_view(self) -> hikari.api.CacheView[hikari.Snowflake, hikari.GuildThreadChannel]:
        return _View()

    def get_threads_view_for_channel(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        channel: hikari.SnowflakeishOr[hikari.PartialChannel],
        /,
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.GuildThreadChannel]:
        del guild, channel
        return _View()

    def get_threads_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.GuildThreadChannel]:
        del guild
        return _View()

    def get_invites_view(self) -> hikari.api.CacheView[str, hikari.InviteWithMetadata]:
        return _View()

    def get_invites_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[str, hikari.InviteWithMetadata]:
        del guild
        return _View()

    def get_invites_view_for_channel(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        channel: hikari.SnowflakeishOr[hikari.PartialChannel],
        /,
    ) -> hikari.api.CacheView[str, hikari.InviteWithMetadata]:
        del guild, channel
        return _View()

    def get_members_view(
        self,
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.api.CacheView[hikari.Snowflake, hikari.Member]]:  # fmt: skip  # noqa: E501 - hikari's signature
        return _View()

    def get_members_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.Member]:
        del guild
        return _View()

    def get_messages_view(self) -> hikari.api.CacheView[hikari.Snowflake, hikari.Message]:
        return _View()

    def get_presences_view(
        self,
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.api.CacheView[hikari.Snowflake, hikari.MemberPresence]]:  # fmt: skip  # noqa: E501 - hikari's signature
        return _View()

    def get_presences_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.MemberPresence]:
        del guild
        return _View()

    def get_roles_view(self) -> hikari.api.CacheView[hikari.Snowflake, hikari.Role]:
        return _View()

    def get_users_view(self) -> hikari.api.CacheView[hikari.Snowflake, hikari.User]:
        return _View()

    def get_voice_states_view(
        self,
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.api.CacheView[hikari.Snowflake, hikari.VoiceState]]:  # fmt: skip  # noqa: E501 - hikari's signature
        return _View()

    def get_voice_states_view_for_channel(
        self,
        guild: hikari.SnowflakeishOr[hikari.PartialGuild],
        channel: hikari.SnowflakeishOr[hikari.PartialChannel],
        /,
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.VoiceState]:
        del guild, channel
        return _View()

    def get_voice_states_view_for_guild(
        self, guild: hikari.SnowflakeishOr[hikari.PartialGuild], /
    ) -> hikari.api.CacheView[hikari.Snowflake, hikari.VoiceState]:
        del guild
        return _View()
