"""Typed command options: declared once by the callback's signature, parsed from a slash
command's values or from the words after a prefix, with a helpful error on bad input.

    async def ban(ctx, member: hikari.Member, days: int = option("days of messages", 0,
                  min=0, max=7), reason: str = option("why", "no reason given")) -> None
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import math
import operator
import re
import shlex
import types
import typing

import hikari

from worker.commands import locales

__all__: typing.Sequence[str] = (
    "ArgumentError",
    "OptionSpec",
    "option",
    "options_of",
)

_REQUIRED: typing.Final = object()
_MENTION: typing.Final = re.compile(r"^<(@!?|@&|#)(\d{15,21})>$|^(\d{15,21})$")
_TRUE: typing.Final = frozenset({"yes", "y", "true", "t", "on", "1", "enable", "enabled"})
_FALSE: typing.Final = frozenset({"no", "n", "false", "f", "off", "0", "disable", "disabled"})


class ArgumentError(ValueError):
    """Bad input for an option: the text is what the user is told."""


class Kind(enum.IntEnum):
    """Discord's application command option types."""

    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


_KINDS: typing.Final[dict[object, Kind]] = {
    str: Kind.STRING,
    int: Kind.INTEGER,
    bool: Kind.BOOLEAN,
    float: Kind.NUMBER,
    hikari.User: Kind.USER,
    hikari.Member: Kind.USER,
    hikari.InteractionMember: Kind.USER,
    hikari.PartialChannel: Kind.CHANNEL,
    hikari.GuildChannel: Kind.CHANNEL,
    hikari.Role: Kind.ROLE,
    hikari.InteractionChannel: Kind.CHANNEL,
    hikari.Attachment: Kind.ATTACHMENT,
}
#: Application Commands > Application Command Option Type: MENTIONABLE "includes users and
#: roles"; declared as ``hikari.User | hikari.Role`` (or with Member), as arc does.
_MENTIONABLE_PARTS: typing.Final = frozenset(
    {hikari.User, hikari.Member, hikari.InteractionMember, hikari.Role}
)
#: The concrete channel classes and the channel type each stands for (Channel Object >
#: Channel Types); an annotation's ``channel_types`` are those of the classes it covers.
_CHANNEL_CLASSES: typing.Final[dict[type[hikari.PartialChannel], hikari.ChannelType]] = {
    hikari.GuildTextChannel: hikari.ChannelType.GUILD_TEXT,
    hikari.DMChannel: hikari.ChannelType.DM,
    hikari.GuildVoiceChannel: hikari.ChannelType.GUILD_VOICE,
    hikari.GroupDMChannel: hikari.ChannelType.GROUP_DM,
    hikari.GuildCategory: hikari.ChannelType.GUILD_CATEGORY,
    hikari.GuildNewsChannel: hikari.ChannelType.GUILD_NEWS,
    hikari.GuildNewsThread: hikari.ChannelType.GUILD_NEWS_THREAD,
    hikari.GuildPublicThread: hikari.ChannelType.GUILD_PUBLIC_THREAD,
    hikari.GuildPrivateThread: hikari.ChannelType.GUILD_PRIVATE_THREAD,
    hikari.GuildStageChannel: hikari.ChannelType.GUILD_STAGE,
    hikari.GuildForumChannel: hikari.ChannelType.GUILD_FORUM,
    hikari.GuildMediaChannel: hikari.ChannelType.GUILD_MEDIA,
}


#: Suggests values while the user types: ``(interaction, text so far) -> choices``.
Autocomplete = typing.Callable[
    [hikari.AutocompleteInteraction, str], typing.Awaitable[typing.Sequence[str | int | float]]
]


@dataclasses.dataclass(frozen=True, slots=True)
class _Declared:
    description: str
    default: object
    min: float | None
    max: float | None
    choices: tuple[str | int | float, ...] | None
    autocomplete: Autocomplete | None = None
    name_localizations: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)
    description_localizations: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)


def option(
    description: str = "",
    default: object = _REQUIRED,
    *,
    min: float | None = None,  # noqa: A002 - Discord's own names
    max: float | None = None,  # noqa: A002
    choices: typing.Sequence[str | int | float] | None = None,
    autocomplete: Autocomplete | None = None,
    name_localizations: typing.Mapping[str, str] | None = None,
    description_localizations: typing.Mapping[str, str] | None = None,
) -> typing.Any:
    """Describe an option in the callback's signature (its type comes from the annotation).
    ``name_localizations`` / ``description_localizations`` map a Discord locale (``"fr"``,
    ``"pt-BR"``) to the name or description users of that language see."""
    return _Declared(
        description, default, min, max, tuple(choices) if choices else None, autocomplete,
        dict(name_localizations or {}), dict(description_localizations or {}),
    )  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    kind: Kind
    annotation: object
    description: str
    required: bool
    default: object
    min: float | None = None
    max: float | None = None
    choices: tuple[str | int | float, ...] | None = None
    autocomplete: Autocomplete | None = None
    #: For a channel option: the channel types the annotation allows (empty: any).
    channel_types: tuple[int, ...] = ()
    name_localizations: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)
    description_localizations: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def wants_member(self) -> bool:
        return self.annotation in (hikari.Member, hikari.InteractionMember) or (
            self.kind is Kind.MENTIONABLE
            and any(a in (hikari.Member, hikari.InteractionMember) for a in _parts(self.annotation))
        )

    def usage(self) -> str:
        return f"<{self.name}>" if self.required else f"[{self.name}]"

    def check(self, value: typing.Any) -> typing.Any:
        """Ranges and choices, for both surfaces (Discord enforces them for slash commands,
        but a prefix command's words are ours to check)."""
        if self.choices and value not in self.choices:
            listed = ", ".join(f"`{c}`" for c in self.choices)
            raise ArgumentError(f"`{self.name}` must be one of {listed}.")
        measured = len(value) if isinstance(value, str) else value
        if isinstance(measured, int | float) and not isinstance(measured, bool):
            if self.min is not None and measured < self.min:
                raise ArgumentError(
                    f"`{self.name}` must be at least {_num(self.min)}{_unit(self)}."
                )
            if self.max is not None and measured > self.max:
                raise ArgumentError(f"`{self.name}` must be at most {_num(self.max)}{_unit(self)}.")
        return value

    def check_channel(self, channel: hikari.PartialChannel) -> hikari.PartialChannel:
        """A prefix command's channel must be of a type the annotation allows (Discord's
        picker only offers those for a slash command)."""
        if self.channel_types and int(channel.type) not in self.channel_types:
            raise ArgumentError(f"`{self.name}` cannot be that kind of channel.")
        return channel


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _unit(spec: OptionSpec) -> str:
    return " characters long" if spec.kind is Kind.STRING else ""


def options_of(callback: typing.Callable[..., typing.Any]) -> list[OptionSpec]:
    """The options a command callback declares after its context parameter."""
    parameters = list(inspect.signature(callback).parameters.values())[1:]
    # Only the options' annotations: the context's may name a type-checking-only import.
    holder = types.SimpleNamespace(
        __annotations__={p.name: p.annotation for p in parameters if p.annotation is not p.empty}
    )
    hints = typing.get_type_hints(holder, globalns=getattr(callback, "__globals__", None))
    specs = []
    for parameter in parameters:
        annotation = hints.get(parameter.name, str)
        required = True
        default: object = None
        declared = parameter.default
        info = _Declared("", _REQUIRED, None, None, None)
        if isinstance(declared, _Declared):
            info = declared
        elif declared is not inspect.Parameter.empty:
            info = _Declared("", declared, None, None, None)
        if info.default is not _REQUIRED:
            required, default = False, info.default
        base = _unwrap_optional(annotation)
        choices = info.choices
        if typing.get_origin(base) is typing.Literal:
            choices = typing.get_args(base)
            base = type(choices[0])
        kind, channel_types = _kind_of(base)
        if kind is None:
            raise TypeError(f"option {parameter.name!r}: unsupported type {annotation!r}")
        locales.check(
            f"option {parameter.name!r}", info.name_localizations,
            info.description_localizations,
        )  # fmt: skip
        specs.append(
            OptionSpec(
                parameter.name, kind, base, info.description, required, default,
                info.min, info.max, choices, info.autocomplete, channel_types,
                locales.differing(info.name_localizations, parameter.name),
                locales.differing(
                    info.description_localizations, info.description or parameter.name
                ),
            )
        )  # fmt: skip
    return specs


def _parts(annotation: object) -> tuple[object, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def _kind_of(base: object) -> tuple[Kind | None, tuple[int, ...]]:
    """The option type an annotation declares, and a channel option's channel types."""
    parts = _parts(base)
    if len(parts) > 1 and hikari.Role in parts and set(parts) <= _MENTIONABLE_PARTS:
        return Kind.MENTIONABLE, ()
    if all(isinstance(p, type) and issubclass(p, hikari.PartialChannel) for p in parts):
        allowed: set[int] = set()
        for part in parts:
            assert isinstance(part, type)  # checked just above
            if part in (hikari.PartialChannel, hikari.InteractionChannel):
                return Kind.CHANNEL, ()
            allowed |= {int(t) for c, t in _CHANNEL_CLASSES.items() if issubclass(c, part)}
        return (Kind.CHANNEL, tuple(sorted(allowed))) if allowed else (None, ())
    return (_KINDS.get(base) if len(parts) == 1 else None), ()


def _unwrap_optional(annotation: object) -> object:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) > 1:
        return functools.reduce(operator.or_, args)
    return annotation


def shown(word: str, limit: int = 40) -> str:
    """A user's word quoted back to them: one line, short, inert (no mention pings anyone,
    no backtick breaks out of the code span)."""
    flat = " ".join(word.split()).replace("`", "'").replace("@", "@\u200b")
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return f"`{flat}`"


#: Discord ids are unsigned 64-bit integers.
_SNOWFLAKE_LIMIT: typing.Final[int] = 2**64


def split_words(text: str) -> list[str]:
    """Words after the command name; quotes group words ("two words")."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def convert_word(spec: OptionSpec, word: str) -> typing.Any:
    """One prefix-command word as the option's type (ids for users, members, channels, roles:
    the router resolves them)."""
    if spec.kind is Kind.STRING:
        return spec.check(word)
    if spec.kind is Kind.INTEGER:
        try:
            number: float = int(word)
        except ValueError:
            raise ArgumentError(
                f"`{spec.name}` must be a whole number, not {shown(word)}."
            ) from None
        return spec.check(number)
    if spec.kind is Kind.NUMBER:
        try:
            number = float(word)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):  # "nan", "inf", "1e309" parse, but are no answer
            raise ArgumentError(f"`{spec.name}` must be a number, not {shown(word)}.")
        return spec.check(number)
    if spec.kind is Kind.BOOLEAN:
        lowered = word.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ArgumentError(f"`{spec.name}` must be yes or no, not {shown(word)}.")
    if spec.kind is Kind.ATTACHMENT:
        raise ArgumentError(f"`{spec.name}`: attach a file to the message instead.")
    return _convert_id(spec, word)


def _convert_id(spec: OptionSpec, word: str) -> hikari.Snowflake | MentionId:
    match = _MENTION.match(word)
    wanted = {Kind.USER: "a user mention or id", Kind.CHANNEL: "a channel mention or id",
              Kind.ROLE: "a role mention or id",
              Kind.MENTIONABLE: "a user or role mention or id"}[spec.kind]  # fmt: skip
    if match is None:
        raise ArgumentError(f"`{spec.name}` must be {wanted}, not {shown(word)}.")
    sigil = match.group(1)
    meant = None if sigil is None else _SIGILS[sigil]
    if (
        meant is not None
        and meant is not spec.kind
        and not (spec.kind is Kind.MENTIONABLE and meant in (Kind.USER, Kind.ROLE))
    ):
        raise ArgumentError(f"`{spec.name}` must be {wanted}, not {shown(word)}.")
    snowflake = int(match.group(2) or match.group(3))
    if snowflake >= _SNOWFLAKE_LIMIT:
        raise ArgumentError(f"`{spec.name}`: no such {spec.kind.name.lower()}.")
    if spec.kind is Kind.MENTIONABLE:
        return MentionId(hikari.Snowflake(snowflake), meant)
    return hikari.Snowflake(snowflake)


_SIGILS: typing.Final = {"@": Kind.USER, "@!": Kind.USER, "@&": Kind.ROLE, "#": Kind.CHANNEL}


@dataclasses.dataclass(frozen=True, slots=True)
class MentionId:
    """A mentionable option's id from a prefix command: a user's or a role's (``kind``), or
    either (a bare id: the router tries the guild's members, then its roles)."""

    id: hikari.Snowflake
    kind: Kind | None
