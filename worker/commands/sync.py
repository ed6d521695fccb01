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


def _option_shape(
    kind: int,
    name: str,
    description: str,
    required: bool,
    choices: typing.Iterable[tuple[str, typing.Any]] | None,
    bounds: tuple[typing.Any, typing.Any, typing.Any, typing.Any],
    autocomplete: bool = False,
    options: list[Shape] | None = None,
) -> Shape:
    return {
        "type": int(kind), "name": name, "description": description, "required": required,
        "choices": sorted((str(n), str(v)) for n, v in choices or ()),
        "bounds": tuple(None if b is None else float(b) for b in bounds),
        "autocomplete": autocomplete, "options": options or [],
    }  # fmt: skip


def _spec_shape(spec: options_module.OptionSpec) -> Shape:
    text = spec.kind == 3
    return _option_shape(
        spec.kind, spec.name, spec.description or spec.name, spec.required,
        [(str(c), c) for c in spec.choices] if spec.choices else None,
        (None if text else spec.min, None if text else spec.max,
         spec.min if text else None, spec.max if text else None),
        autocomplete=spec.autocomplete is not None,
    )  # fmt: skip


def shape_of(command: model.Command) -> Shape:
    if command.subcommands:
        options = [
            _option_shape(
                1, sub.name, sub.description, False, None, (None,) * 4,
                options=[_spec_shape(o) for o in sub.options],
            )
            for sub in sorted(command.subcommands.values(), key=lambda c: c.name)
        ]  # fmt: skip
    else:
        options = [_spec_shape(o) for o in command.options]
    return {
        "name": command.name,
        "description": command.description,
        "options": options,
        "guild_only": command.guild_only,
        "permissions": int(command.user_permissions),
    }


def _existing_option(option: hikari.CommandOption) -> Shape:
    return _option_shape(
        int(option.type), option.name, option.description, option.is_required,
        [(c.name, c.value) for c in option.choices] if option.choices else None,
        (option.min_value, option.max_value, option.min_length, option.max_length),
        autocomplete=option.autocomplete,
        options=[_existing_option(o) for o in option.options or ()],
    )  # fmt: skip


def shape_of_existing(command: hikari.PartialCommand) -> Shape:
    raw_options = getattr(command, "options", None) or ()
    options = [_existing_option(o) for o in raw_options]
    if raw_options and all(o.type == hikari.OptionType.SUB_COMMAND for o in raw_options):
        options.sort(key=lambda o: o["name"])
    contexts = set(command.context_types or ())
    return {
        "name": command.name,
        "description": getattr(command, "description", ""),
        "options": options,
        "guild_only": bool(contexts) and contexts <= set(_CONTEXTS_GUILD),
        "permissions": int(command.default_member_permissions or 0),
    }


def shape_of_builder(built: hikari.api.CommandBuilder) -> Shape:
    """A command a framework (worker.frameworks) built, shaped as one Discord has."""
    contexts = set(built.context_types or ())
    return {
        "name": built.name,
        "description": getattr(built, "description", ""),
        "options": [_existing_option(o) for o in getattr(built, "options", ())],
        "guild_only": bool(contexts) and contexts <= set(_CONTEXTS_GUILD),
        "permissions": int(built.default_member_permissions or 0),
    }


async def plan(
    rest: hikari.api.RESTClient,
    application_id: hikari.Snowflakeish,
    commands: typing.Iterable[model.Command],
    guild_id: hikari.Snowflakeish | None = None,
    extra: typing.Sequence[hikari.api.CommandBuilder] = (),
) -> Diff:
    """``extra``: the commands of the frameworks attached to the bot (worker.frameworks)."""
    ours = {c.name: shape_of(c) for c in commands} | {b.name: shape_of_builder(b) for b in extra}
    existing = await rest.fetch_application_commands(
        application_id, guild_id if guild_id is not None else hikari.UNDEFINED
    )
    theirs = {c.name: shape_of_existing(c) for c in existing}
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
    )


def builder(rest: hikari.api.RESTClient, command: model.Command) -> hikari.api.CommandBuilder:
    built = rest.slash_command_builder(command.name, command.description)
    if command.subcommands:
        for sub in sorted(command.subcommands.values(), key=lambda c: c.name):
            built.add_option(
                hikari.CommandOption(
                    type=hikari.OptionType.SUB_COMMAND,
                    name=sub.name,
                    description=sub.description,
                    options=[_command_option(o) for o in sub.options],
                )
            )
    for spec in command.options:
        built.add_option(_command_option(spec))
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
