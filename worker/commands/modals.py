"""Modals: opened from a command or a click, read back typed when submitted.

    @bot.command(description="Tell us", opens_modal=True)
    async def feedback(ctx: Context) -> None:
        await ctx.respond_with_modal(
            "Feedback", f"feedback:{ctx.author.id}",
            TextInput("rating", "From 1 to 5", max_length=1),
            TextInput("text", "What went wrong?", long=True, required=False),
        )

    @bot.modal("feedback:*")
    async def got_feedback(ctx: ComponentContext, rating: int, text: str = "") -> None:
        await ctx.respond(f"thanks for the {rating}", ephemeral=True)

The submitted handler's parameters after the context are the text inputs, by ``custom_id``,
typed as a prefix command's words are (``str``, ``int``, ``float``, ``bool``, ``Literal``, with
``option(...)`` bounds); a value that does not fit is answered with what was wrong.
"""

from __future__ import annotations

import dataclasses
import typing

import hikari

from worker.commands import options as options_module

__all__: typing.Sequence[str] = ("TextInput", "fields_of", "open_modal", "parse", "submitted")

#: Interaction Response Type 9 MODAL, Modal data: ``title`` max 45 characters,
#: ``custom_id`` max 100, between 1 and 5 components.
TITLE_LIMIT: typing.Final = 45
CUSTOM_ID_LIMIT: typing.Final = 100
FIELDS_LIMIT: typing.Final = 5
#: Component Reference > Text Input: label max 45, placeholder max 100, value and lengths
#: 0-4000 (``max_length`` at least 1).
_LABEL_LIMIT: typing.Final = 45
_PLACEHOLDER_LIMIT: typing.Final = 100
_TEXT_LIMIT: typing.Final = 4000
_TYPED: typing.Final = frozenset(
    {
        options_module.Kind.STRING,
        options_module.Kind.INTEGER,
        options_module.Kind.NUMBER,
        options_module.Kind.BOOLEAN,
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class TextInput:
    """One text input of a modal (``long``: a paragraph rather than one line)."""

    custom_id: str
    label: str
    long: bool = False
    placeholder: str | None = None
    value: str | None = None
    required: bool = True
    min_length: int = 0
    max_length: int = _TEXT_LIMIT

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= len(self.custom_id) <= CUSTOM_ID_LIMIT:
            problems.append("a custom_id of 1-100 characters")
        if not 1 <= len(self.label) <= _LABEL_LIMIT:
            problems.append("a label of 1-45 characters")
        if self.placeholder is not None and len(self.placeholder) > _PLACEHOLDER_LIMIT:
            problems.append("a placeholder of at most 100 characters")
        if self.value is not None and len(self.value) > _TEXT_LIMIT:
            problems.append("a value of at most 4000 characters")
        if not 0 <= self.min_length <= _TEXT_LIMIT or not 1 <= self.max_length <= _TEXT_LIMIT:
            problems.append("lengths within 0-4000 (max_length at least 1)")
        elif self.min_length > self.max_length:
            problems.append("min_length at most max_length")
        if problems:
            raise ValueError(f"text input {self.custom_id!r}: {', '.join(problems)}")


def check_modal(title: str, custom_id: str, fields: typing.Sequence[TextInput]) -> None:
    if not 1 <= len(title) <= TITLE_LIMIT:
        raise ValueError(f"modal title {title!r}: 1-45 characters")
    if not 1 <= len(custom_id) <= CUSTOM_ID_LIMIT:
        raise ValueError(f"modal custom_id {custom_id!r}: 1-100 characters")
    if not 1 <= len(fields) <= FIELDS_LIMIT:
        raise ValueError(f"modal {custom_id!r}: 1-5 text inputs, not {len(fields)}")
    ids = [f.custom_id for f in fields]
    if len(set(ids)) != len(ids):
        raise ValueError(f"modal {custom_id!r}: text input custom_ids must differ")


async def open_modal(
    interaction: hikari.ModalResponseMixin,
    title: str,
    custom_id: str,
    fields: typing.Sequence[TextInput],
) -> None:
    """Answer ``interaction`` with the modal (one action row per text input)."""
    check_modal(title, custom_id, fields)
    rows = []
    for field in fields:
        row = interaction.app.rest.build_modal_action_row()
        row.add_text_input(
            field.custom_id, field.label,
            style=hikari.TextInputStyle.PARAGRAPH if field.long else hikari.TextInputStyle.SHORT,
            placeholder=field.placeholder if field.placeholder is not None else hikari.UNDEFINED,
            value=field.value if field.value is not None else hikari.UNDEFINED,
            required=field.required, min_length=field.min_length, max_length=field.max_length,
        )  # fmt: skip
        rows.append(row)
    await interaction.create_modal_response(title, custom_id, components=rows)


def submitted(interaction: hikari.ModalInteraction) -> dict[str, str]:
    """The submitted text inputs' values, by ``custom_id``."""
    values: dict[str, str] = {}
    for row in interaction.components:
        for component in getattr(row, "components", ()):
            if isinstance(component, hikari.TextInputComponent):
                values[component.custom_id] = component.value
    return values


def fields_of(callback: typing.Callable[..., typing.Any]) -> tuple[options_module.OptionSpec, ...]:
    """The typed text inputs a modal handler reads after its context parameter."""
    specs = tuple(options_module.options_of(callback))
    for spec in specs:
        if spec.kind not in _TYPED:
            raise TypeError(f"modal field {spec.name!r}: a text input is str, int, float or bool")
    return specs


def parse(
    specs: typing.Sequence[options_module.OptionSpec], values: typing.Mapping[str, str]
) -> dict[str, typing.Any]:
    """The handler's keyword arguments; ``ArgumentError`` says what does not fit."""
    kwargs: dict[str, typing.Any] = {}
    for spec in specs:
        raw = values.get(spec.name, "").strip()
        if not raw:
            if spec.required:
                raise options_module.ArgumentError(f"`{spec.name}` is missing.")
            kwargs[spec.name] = spec.default
            continue
        kwargs[spec.name] = options_module.convert_word(spec, raw)
    return kwargs
