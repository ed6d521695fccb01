"""Typed settings documents: validation, schema versions with forward migration, and the
fields this code does not know kept as they are.

A document is read from MongoDB (or from its Redis copy) as a plain mapping, migrated forward
to ``CURRENT`` in memory, and turned into a frozen object. Writes never replace a document:
the store changes single fields with update operators, so fields written by a newer release
(or by an operator) survive an older replica's writes.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing

if typing.TYPE_CHECKING:
    import datetime as dt

__all__: typing.Sequence[str] = (
    "GUILD_VERSION",
    "USER_VERSION",
    "GuildSettings",
    "Infraction",
    "InfractionKind",
    "SettingsValidationError",
    "UserSettings",
    "check_command_name",
    "check_locale",
    "check_prefix",
    "migrate_guild",
    "plugin_config",
)

Document = dict[str, typing.Any]
C = typing.TypeVar("C")
#: The guild document's schema version this code writes and reads.
GUILD_VERSION: typing.Final = 2
USER_VERSION: typing.Final = 1
_LOCALE: typing.Final = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")
_COMMAND: typing.Final = re.compile(r"^[\w-]{1,32}$")
MAX_PREFIX: typing.Final = 32


class SettingsValidationError(ValueError):
    """A value or a stored field is not what the schema says; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix.strip():
        raise SettingsValidationError("prefix", "must be a non-empty text")
    if len(prefix) > MAX_PREFIX:
        raise SettingsValidationError("prefix", f"must be at most {MAX_PREFIX} characters")
    return prefix


def check_locale(locale: str) -> str:
    if not isinstance(locale, str) or not _LOCALE.match(locale):
        raise SettingsValidationError("locale", f"{locale!r} is not a locale like 'en-US'")
    return locale


def check_command_name(name: str) -> str:
    if not isinstance(name, str) or not _COMMAND.match(name):
        raise SettingsValidationError("command", f"{name!r} is not a command name")
    return name


# --- migrations ------------------------------------------------------------------------------


def _guild_v1_to_v2(doc: Document) -> Document:
    """v1 (no ``v``): ``language`` and ``disabled``; v2: ``locale``, ``disabled_commands``,
    ``disabled_channels``."""
    if "language" in doc:
        language = doc.pop("language")
        doc.setdefault("locale", {"en": "en-US"}.get(language, language))
    if "disabled" in doc:
        # A v2 write may have landed before the migration did: keep both lists.
        current = list(doc.get("disabled_commands", []))
        doc["disabled_commands"] = current + [n for n in doc.pop("disabled") if n not in current]
    doc.setdefault("disabled_channels", [])
    return doc


_GUILD_MIGRATIONS: typing.Final[dict[int, typing.Callable[[Document], Document]]] = {
    1: _guild_v1_to_v2,
}


def migrate_guild(doc: Document) -> tuple[Document, bool]:
    """The document at ``GUILD_VERSION`` and whether it changed (a newer one is left as is)."""
    version = doc.get("v", 1)
    if not isinstance(version, int) or version < 1:
        raise SettingsValidationError("v", f"unknown schema version {version!r}")
    changed = False
    while version < GUILD_VERSION:
        doc = _GUILD_MIGRATIONS[version](dict(doc))
        version += 1
        doc["v"] = version
        changed = True
    return doc, changed


# --- documents -------------------------------------------------------------------------------


def _str_list(doc: Document, field: str) -> tuple[str, ...]:
    value = doc.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsValidationError(field, "must be a list of texts")
    return tuple(value)


def _int_list(doc: Document, field: str) -> frozenset[int]:
    value = doc.get(field, [])
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise SettingsValidationError(field, "must be a list of ids")
    return frozenset(value)


def _optional_str(doc: Document, field: str) -> str | None:
    value = doc.get(field)
    if value is not None and not isinstance(value, str):
        raise SettingsValidationError(field, "must be a text")
    return value


def _plugins(doc: Document) -> types.MappingProxyType[str, Document]:
    value = doc.get("plugins", {})
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise SettingsValidationError("plugins", "must map plugin names to sub-documents")
    return types.MappingProxyType(value)


def _extra(doc: Document, known: frozenset[str]) -> types.MappingProxyType[str, typing.Any]:
    return types.MappingProxyType({k: v for k, v in doc.items() if k not in known})


_GUILD_FIELDS: typing.Final = frozenset(
    {
        "_id",
        "v",
        "rev",
        "updated_at",
        "prefix",
        "locale",
        "disabled_commands",
        "disabled_channels",
        "plugins",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class GuildSettings:
    """A guild's settings; ``prefix`` None means the bot's default."""

    guild_id: int
    prefix: str | None = None
    locale: str | None = None
    disabled_commands: tuple[str, ...] = ()
    disabled_channels: frozenset[int] = frozenset()
    plugins: typing.Mapping[str, Document] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    #: Increases with every write; what caches compare.
    rev: int = 0
    #: Fields this release does not know, kept untouched.
    extra: typing.Mapping[str, typing.Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )

    @classmethod
    def from_document(cls, guild_id: int, doc: Document | None) -> GuildSettings:
        if doc is None:
            return cls(guild_id)
        doc, _ = migrate_guild(doc)
        rev = doc.get("rev", 0)
        if type(rev) is not int:
            raise SettingsValidationError("rev", "must be an integer")
        return cls(
            guild_id=guild_id,
            prefix=_optional_str(doc, "prefix"),
            locale=_optional_str(doc, "locale"),
            disabled_commands=_str_list(doc, "disabled_commands"),
            disabled_channels=_int_list(doc, "disabled_channels"),
            plugins=_plugins(doc),
            rev=rev,
            extra=_extra(doc, _GUILD_FIELDS),
        )

    def is_disabled(self, command: str, channel_id: int | None = None) -> bool:
        return command in self.disabled_commands or (
            channel_id is not None and channel_id in self.disabled_channels
        )

    def plugin(self, name: str, config_type: type[C]) -> C:
        """The plugin's sub-document as its typed config (defaults for what is missing)."""
        return plugin_config(config_type, self.plugins.get(name, {}), f"plugins.{name}")


_USER_FIELDS: typing.Final = frozenset({"_id", "v", "rev", "updated_at", "locale", "plugins"})


@dataclasses.dataclass(frozen=True, slots=True)
class UserSettings:
    user_id: int
    locale: str | None = None
    plugins: typing.Mapping[str, Document] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    rev: int = 0
    extra: typing.Mapping[str, typing.Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )

    @classmethod
    def from_document(cls, user_id: int, doc: Document | None) -> UserSettings:
        if doc is None:
            return cls(user_id)
        version = doc.get("v", USER_VERSION)
        if not isinstance(version, int) or version < 1:
            raise SettingsValidationError("v", f"unknown schema version {version!r}")
        return cls(
            user_id=user_id,
            locale=_optional_str(doc, "locale"),
            plugins=_plugins(doc),
            rev=doc.get("rev", 0),
            extra=_extra(doc, _USER_FIELDS),
        )

    def plugin(self, name: str, config_type: type[C]) -> C:
        return plugin_config(config_type, self.plugins.get(name, {}), f"plugins.{name}")


def plugin_config(config_type: type[C], sub: Document, where: str) -> C:
    """Build a plugin's config dataclass from its sub-document, checking each known field's
    type; unknown keys are ignored here (and kept in the database)."""
    if not dataclasses.is_dataclass(config_type):
        raise TypeError(f"{config_type!r} is not a dataclass")
    hints = typing.get_type_hints(config_type)
    values: dict[str, typing.Any] = {}
    for field in dataclasses.fields(config_type):
        if field.name not in sub:
            continue
        value = sub[field.name]
        expected = hints[field.name]
        if not _matches(value, expected):
            raise SettingsValidationError(
                f"{where}.{field.name}", f"{value!r} is not {_describe(expected)}"
            )
        values[field.name] = value
    return config_type(**values)


def _matches(value: object, expected: typing.Any) -> bool:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(expected) or (typing.Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if expected is typing.Any:
        return True
    if expected is float:
        return type(value) in (int, float)
    if expected is int:
        return type(value) is int
    return isinstance(expected, type) and isinstance(value, expected)


def _describe(expected: typing.Any) -> str:
    return getattr(expected, "__name__", str(expected))


# --- infractions -----------------------------------------------------------------------------


class InfractionKind(enum.StrEnum):
    WARN = "warn"
    TIMEOUT = "timeout"
    KICK = "kick"
    BAN = "ban"


@dataclasses.dataclass(frozen=True, slots=True)
class Infraction:
    """A moderation record; ``case`` numbers count up per guild."""

    guild_id: int
    case: int
    user_id: int
    moderator_id: int
    kind: InfractionKind
    reason: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    active: bool

    @classmethod
    def from_document(cls, doc: Document) -> Infraction:
        try:
            return cls(
                guild_id=int(doc["guild_id"]),
                case=int(doc["case"]),
                user_id=int(doc["user_id"]),
                moderator_id=int(doc["moderator_id"]),
                kind=InfractionKind(doc["kind"]),
                reason=str(doc.get("reason", "")),
                created_at=doc["created_at"],
                expires_at=doc.get("expires_at"),
                active=bool(doc.get("active", True)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise SettingsValidationError("infraction", f"malformed record: {exc}") from None
