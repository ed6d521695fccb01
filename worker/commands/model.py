"""A command: one definition, a slash command and (where the bot reads messages) a prefix
command."""

from __future__ import annotations

import dataclasses
import typing

import hikari

from worker.commands import locales

if typing.TYPE_CHECKING:
    from worker.commands import context
    from worker.commands import options as options_module

__all__: typing.Sequence[str] = ("Check", "Command", "Cooldown", "MaxConcurrency")

Callback = typing.Callable[..., typing.Coroutine[typing.Any, typing.Any, None]]
#: Called with the context (a command's ``Context``, or a ``ComponentContext`` for a click or
#: a modal) and the exception its handler raised: returns when it handled it, raises (the same
#: exception or another) to pass it on (arc's convention).
ErrorHandler = typing.Callable[
    [typing.Any, Exception], typing.Coroutine[typing.Any, typing.Any, None]
]
#: A check answers None (pass) or the reason it fails, which the user is told.
Check = typing.Callable[["context.Context"], typing.Awaitable[str | None]]
SCOPES: typing.Final = frozenset({"user", "channel", "guild", "global"})


@dataclasses.dataclass(frozen=True, slots=True)
class Cooldown:
    """At most ``rate`` uses per ``per`` seconds per ``scope``, across every replica."""

    rate: int
    per: float
    scope: str = "user"

    def __post_init__(self) -> None:
        if self.rate < 1 or self.per <= 0 or self.scope not in SCOPES:
            raise ValueError(f"bad cooldown {self!r}: scope is one of {sorted(SCOPES)}")


@dataclasses.dataclass(frozen=True, slots=True)
class MaxConcurrency:
    """At most ``limit`` runs at once per ``scope``, across every replica."""

    limit: int
    scope: str = "global"

    def __post_init__(self) -> None:
        if self.limit < 1 or self.scope not in SCOPES:
            raise ValueError(f"bad max concurrency {self!r}: scope is one of {sorted(SCOPES)}")


@dataclasses.dataclass(slots=True)
class Command:
    name: str
    description: str
    #: ``None`` for a group: it only holds ``subcommands``.
    callback: Callback | None
    options: list[options_module.OptionSpec]
    guild_only: bool = False
    owner_only: bool = False
    user_permissions: hikari.Permissions = hikari.Permissions.NONE
    bot_permissions: hikari.Permissions = hikari.Permissions.NONE
    checks: list[Check] = dataclasses.field(default_factory=list)
    cooldown: Cooldown | None = None
    max_concurrency: MaxConcurrency | None = None
    aliases: tuple[str, ...] = ()
    plugin: str = ""
    subcommands: dict[str, Command] = dataclasses.field(default_factory=dict)
    #: The group's name, for a subcommand.
    parent: str = ""
    #: The handler may answer a slash invocation with a modal: never auto-deferred, it has
    #: Discord's whole 3 s for its first response (see ``worker.interactions``).
    opens_modal: bool = False
    #: Application Command Types: 1 CHAT_INPUT (slash), 2 USER and 3 MESSAGE (context menus,
    #: whose callback takes the member or message the menu was opened on).
    type: hikari.CommandType = hikari.CommandType.SLASH
    name_localizations: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)
    description_localizations: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: This command's own error handler, tried before the bot's.
    on_error: ErrorHandler | None = None

    def __post_init__(self) -> None:
        menu = self.type is not hikari.CommandType.SLASH
        what = f"command {self.name!r}"
        if menu:
            locales.check_menu_name(what, self.name)
            # Application Command Object: "description ... Empty string for USER and MESSAGE
            # commands".
            if self.description:
                raise ValueError(f"{what}: context menu commands have no description")
        else:
            locales.check_slash_name(what, self.name)
            if not 1 <= len(self.description) <= locales.DESCRIPTION_LIMIT:
                raise ValueError(f"{what}: a description of 1-100 characters")
        locales.check(what, self.name_localizations, self.description_localizations, menu=menu)
        self.name_localizations = locales.differing(self.name_localizations, self.name)
        self.description_localizations = locales.differing(
            self.description_localizations, self.description
        )
        locales.check_option_names(what, [(o.name, o.name_localizations) for o in self.options])
        seen_optional = False
        for spec in self.options:
            if spec.required and seen_optional:
                raise ValueError(f"command {self.name!r}: required option after an optional one")
            seen_optional = seen_optional or not spec.required

    @property
    def qualified_name(self) -> str:
        return f"{self.parent} {self.name}" if self.parent else self.name

    def usage(self, prefix: str) -> str:
        if self.subcommands:
            return f"{prefix}{self.name} <{'|'.join(sorted(self.subcommands))}> ..."
        return " ".join([f"{prefix}{self.qualified_name}", *(o.usage() for o in self.options)])
