"""Application command sync: run once per deploy (not by every replica), with a dry run.

    python -m worker sync-commands [--dry-run] [--guild ID]

Loads the plugins in WORKER_PLUGINS, compares their commands with what Discord has
(global, or one guild's), prints the difference, and unless ``--dry-run`` replaces Discord's
list with ours in one bulk overwrite (``PUT /applications/{id}/commands``).
"""

from __future__ import annotations

import dataclasses
import typing

import hikari

if typing.TYPE_CHECKING:
    from worker.commands import model
    from worker.commands import options as options_module

__all__: typing.Sequence[str] = ("Diff", "apply", "plan")

Shape = dict[str, typing.Any]
_CONTEXTS_GUILD: typing.Final = (hikari.ApplicationContextType.GUILD,)
_CONTEXTS_ANYWHERE: typing.Final = (
    hikari.ApplicationContextType.GUILD,
    hikari.ApplicationContextType.BOT_DM,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Diff:
    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def describe(self) -> str:
        lines = [f"+ {n}" for n in self.added] + [f"~ {n}" for n in self.changed]
        lines += [f"- {n}" for n in self.removed]
        summary = (
            f"{len(self.added)} to add, {len(self.changed)} to change, "
            f"{len(self.removed)} to remove, {len(self.unchanged)} unchanged"
        )
        return "\n".join([*lines, summary])


def _option_shape(  # noqa: PLR0913 - one per field of an option Discord compares
    kind: int,
    name: str,
    description: str,
    required: bool,
    choices: typing.Iterable[tuple[str, typing.Any]] | None,
    bounds: tuple[typing.Any, typing.Any, typing.Any, typing.Any],
    *,
    autocomplete: bool = False,
    options: list[Shape] | None = None,
    extra: tuple[typing.Iterable[int], _Texts, _Texts] = ((), {}, {}),
) -> Shape:
    channel_types, names, descriptions = extra
    return {
        "type": int(kind), "name": name, "description": description, "required": required,
        "choices": sorted((str(n), str(v)) for n, v in choices or ()),
        "bounds": tuple(None if b is None else float(b) for b in bounds),
        "autocomplete": autocomplete, "options": options or [],
        "channel_types": sorted(int(t) for t in channel_types),
        "localizations": _localized(names, descriptions),
    }  # fmt: skip


_Texts = typing.Mapping[typing.Any, str]


def _localized(names: _Texts | None, descriptions: _Texts | None) -> Shape:
    return {
        "names": {str(k): v for k, v in (names or {}).items()},
        "descriptions": {str(k): v for k, v in (descriptions or {}).items()},
    }


def key_of(kind: int, name: str) -> str:
    """How the diff names a command: context menus share names with slash commands."""
    return (
        name
        if kind == hikari.CommandType.SLASH
        else f"[{hikari.CommandType(kind).name.lower()}] {name}"
    )


def _spec_shape(spec: options_module.OptionSpec) -> Shape:
    text = spec.kind == 3
    return _option_shape(
        spec.kind, spec.name, spec.description or spec.name, spec.required,
        [(str(c), c) for c in spec.choices] if spec.choices else None,
        (None if text else spec.min, None if text else spec.max,
         spec.min if text else None, spec.max if text else None),
        autocomplete=spec.autocomplete is not None,
        extra=(spec.channel_types, spec.name_localizations, spec.description_localizations),
    )  # fmt: skip


def shape_of(command: model.Command) -> Shape:
    if command.subcommands:
        options = [
            _option_shape(
                1, sub.name, sub.description, False, None, (None,) * 4,
                options=[_spec_shape(o) for o in sub.options],
                extra=((), sub.name_localizations, sub.description_localizations),
            )
            for sub in sorted(command.subcommands.values(), key=lambda c: c.name)
        ]  # fmt: skip
    else:
        options = [_spec_shape(o) for o in command.options]
    return {
        "type": int(command.type),
        "name": command.name,
        "description": command.description,
        "options": options,
        "guild_only": command.guild_only,
        "permissions": int(command.user_permissions),
        "localizations": _localized(command.name_localizations, command.description_localizations),
    }


def _existing_option(option: hikari.CommandOption) -> Shape:
    return _option_shape(
        int(option.type), option.name, option.description, option.is_required,
        [(c.name, c.value) for c in option.choices] if option.choices else None,
        (option.min_value, option.max_value, option.min_length, option.max_length),
        autocomplete=option.autocomplete,
        options=[_existing_option(o) for o in option.options or ()],
        extra=(option.channel_types or (), option.name_localizations,
               option.description_localizations),
    )  # fmt: skip


def shape_of_existing(command: hikari.PartialCommand) -> Shape:
    raw_options = getattr(command, "options", None) or ()
    options = [_existing_option(o) for o in raw_options]
    if raw_options and all(o.type == hikari.OptionType.SUB_COMMAND for o in raw_options):
        options.sort(key=lambda o: o["name"])
    contexts = set(command.context_types or ())
    return {
        "type": int(command.type),
        "name": command.name,
        "description": getattr(command, "description", ""),
        "options": options,
        "guild_only": bool(contexts) and contexts <= set(_CONTEXTS_GUILD),
        "permissions": int(command.default_member_permissions or 0),
        "localizations": _localized(
            command.name_localizations, getattr(command, "description_localizations", None)
        ),
    }


def shape_of_builder(built: hikari.api.CommandBuilder) -> Shape:
    """A command a framework (worker.frameworks) built, shaped as one Discord has."""
    contexts = set(built.context_types or ())
    return {
        "type": int(built.type),
        "name": built.name,
        "description": getattr(built, "description", ""),
        "options": [_existing_option(o) for o in getattr(built, "options", ())],
        "guild_only": bool(contexts) and contexts <= set(_CONTEXTS_GUILD),
        "permissions": int(built.default_member_permissions or 0),
        "localizations": _localized(
            built.name_localizations, getattr(built, "description_localizations", None)
        ),
    }


async def plan(
    rest: hikari.api.RESTClient,
    application_id: hikari.Snowflakeish,
    commands: typing.Iterable[model.Command],
    guild_id: hikari.Snowflakeish | None = None,
    extra: typing.Sequence[hikari.api.CommandBuilder] = (),
) -> Diff:
    """``extra``: the commands of the frameworks attached to the bot (worker.frameworks)."""
    ours = {key_of(c.type, c.name): shape_of(c) for c in commands} | {
        key_of(b.type, b.name): shape_of_builder(b) for b in extra
    }
    existing = await rest.fetch_application_commands(
        application_id, guild_id if guild_id is not None else hikari.UNDEFINED
    )
    theirs = {key_of(c.type, c.name): shape_of_existing(c) for c in existing}
    return Diff(
        added=sorted(set(ours) - set(theirs)),
        changed=sorted(n for n in set(ours) & set(theirs) if ours[n] != theirs[n]),
        removed=sorted(set(theirs) - set(ours)),
        unchanged=sorted(n for n in set(ours) & set(theirs) if ours[n] == theirs[n]),
    )


def _command_option(spec: options_module.OptionSpec) -> hikari.CommandOption:
    text = spec.kind == 3
    return hikari.CommandOption(
        type=hikari.OptionType(int(spec.kind)),
        name=spec.name,
        description=spec.description or spec.name,
        is_required=spec.required,
        choices=[hikari.CommandChoice(name=str(c), value=c) for c in spec.choices]
        if spec.choices
        else None,
        autocomplete=spec.autocomplete is not None,
        min_value=None if text else spec.min,
        max_value=None if text else spec.max,
        min_length=int(spec.min) if text and spec.min is not None else None,
        max_length=int(spec.max) if text and spec.max is not None else None,
        channel_types=list(spec.channel_types) or None,
        name_localizations=spec.name_localizations,
        description_localizations=spec.description_localizations,
    )


def builder(rest: hikari.api.RESTClient, command: model.Command) -> hikari.api.CommandBuilder:
    if command.type is not hikari.CommandType.SLASH:
        # Application Command Object: USER and MESSAGE commands have no description and
        # no options.
        menu = rest.context_menu_command_builder(command.type, command.name)
        menu.set_name_localizations(command.name_localizations)
        return _common(menu, command)
    built = rest.slash_command_builder(command.name, command.description)
    built.set_name_localizations(command.name_localizations)
    built.set_description_localizations(command.description_localizations)
    if command.subcommands:
        for sub in sorted(command.subcommands.values(), key=lambda c: c.name):
            built.add_option(
                hikari.CommandOption(
                    type=hikari.OptionType.SUB_COMMAND,
                    name=sub.name,
                    description=sub.description,
                    options=[_command_option(o) for o in sub.options],
                    name_localizations=sub.name_localizations,
                    description_localizations=sub.description_localizations,
                )
            )
    for spec in command.options:
        built.add_option(_command_option(spec))
    return _common(built, command)


def _common(built: hikari.api.CommandBuilder, command: model.Command) -> hikari.api.CommandBuilder:
    if command.user_permissions:
        built.set_default_member_permissions(command.user_permissions)
    built.set_context_types(_CONTEXTS_GUILD if command.guild_only else _CONTEXTS_ANYWHERE)
    return built


async def apply(
    rest: hikari.api.RESTClient,
    application_id: hikari.Snowflakeish,
    commands: typing.Iterable[model.Command],
    guild_id: hikari.Snowflakeish | None = None,
    extra: typing.Sequence[hikari.api.CommandBuilder] = (),
) -> None:
    """Replace Discord's list with ours (and the frameworks' ``extra``), in one request."""
    await rest.set_application_commands(
        application_id,
        [*(builder(rest, c) for c in commands), *extra],
        guild_id if guild_id is not None else hikari.UNDEFINED,
    )
