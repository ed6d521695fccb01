"""Modals: Discord's limits checked when built, submitted values read back typed."""

from __future__ import annotations

import typing

import hikari  # noqa: TC002 - options_of evaluates the annotations at runtime
import pytest

from worker.commands import modals, option, options


def test_text_inputs_and_modals_within_discords_limits() -> None:
    with pytest.raises(ValueError, match="label of 1-45"):
        modals.TextInput("a", "x" * 46)
    with pytest.raises(ValueError, match="min_length at most max_length"):
        modals.TextInput("a", "A", min_length=10, max_length=5)
    field = modals.TextInput("a", "A")
    with pytest.raises(ValueError, match="title"):
        modals.check_modal("t" * 46, "m", [field])
    with pytest.raises(ValueError, match="1-5 text inputs"):
        modals.check_modal("t", "m", [modals.TextInput(str(i), "A") for i in range(6)])
    with pytest.raises(ValueError, match="must differ"):
        modals.check_modal("t", "m", [field, field])
    modals.check_modal("Feedback", "feedback:1", [field])


async def feedback(
    ctx: object,
    rating: int = option("1 to 5", min=1, max=5),
    mood: typing.Literal["happy", "sad"] = option("how", "happy"),
    text: str = "",
) -> None:
    del ctx, rating, mood, text


def test_submitted_values_are_typed_and_bad_ones_explained() -> None:
    specs = modals.fields_of(feedback)
    assert modals.parse(specs, {"rating": " 4 ", "text": "great"}) == {
        "rating": 4, "mood": "happy", "text": "great",
    }  # fmt: skip
    with pytest.raises(options.ArgumentError, match="at most 5"):
        modals.parse(specs, {"rating": "9"})
    with pytest.raises(options.ArgumentError, match="whole number"):
        modals.parse(specs, {"rating": "five"})
    with pytest.raises(options.ArgumentError, match="`rating` is missing"):
        modals.parse(specs, {"rating": "  "})
    with pytest.raises(options.ArgumentError, match="one of"):
        modals.parse(specs, {"rating": "1", "mood": "angry"})


async def bad(ctx: object, who: hikari.User) -> None:
    del ctx, who


def test_a_modal_field_cannot_be_a_user() -> None:
    with pytest.raises(TypeError, match="str, int, float or bool"):
        modals.fields_of(bad)
