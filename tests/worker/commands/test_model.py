"""Command definitions Discord would refuse fail when declared, not at sync time."""

from __future__ import annotations

import hikari
import pytest

from worker.commands import model, option, options


async def callback(ctx: object) -> None:
    del ctx


def menu(name: str, **kwargs: object) -> model.Command:
    return model.Command(name, "", callback, [], type=hikari.CommandType.USER, **kwargs)  # type: ignore[arg-type]


def test_context_menu_names_are_free_and_there_is_no_description() -> None:
    assert menu("Report user").name == "Report user"
    with pytest.raises(ValueError, match="1-32 characters"):
        menu("x" * 33)
    with pytest.raises(ValueError, match="no description"):
        model.Command("Quote", "d", callback, [], type=hikari.CommandType.MESSAGE)
    with pytest.raises(ValueError, match="lowercase"):
        model.Command("Report user", "Reports", callback, [])  # a slash command's name
    with pytest.raises(ValueError, match="no description to localise"):
        menu("Report", description_localizations={"fr": "Signaler"})
    assert menu("Report", name_localizations={"fr": "Signaler"}).name_localizations == {
        "fr": "Signaler"
    }


def test_localised_option_names_must_not_clash() -> None:
    async def two(
        ctx: object,
        age: int,
        name: str = option("n", name_localizations={"fr": "age"}),
    ) -> None:
        del ctx, age, name

    with pytest.raises(ValueError, match="is taken"):
        model.Command("birthday", "d", two, options.options_of(two))


def test_command_localisations_equal_to_the_default_are_dropped() -> None:
    command = model.Command(
        "ping", "Pong", callback, [], name_localizations={"fr": "ping", "de": "klingeln"}
    )
    assert command.name_localizations == {"de": "klingeln"}
