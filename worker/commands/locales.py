"""Localised names and descriptions of commands and options, checked when they are declared
(rather than by Discord's 400 at ``sync-commands``, long after the code was written).

Discord's rules (Application Commands > Localization): the keys are Discord locales
(Reference > Locales, ``hikari.Locale``); each localised name follows the same rules as the
default name and each description the same length; the command is still resolved by its
default name, whatever the user's client shows.
"""

from __future__ import annotations

import re
import typing

import hikari

__all__: typing.Sequence[str] = ("LOCALES", "check", "check_option_names", "differing")

LOCALES: typing.Final = frozenset(str(locale) for locale in hikari.Locale)
#: Application Command Naming: ``^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$`` (``\w`` in
#: Python's unicode mode covers letters, digits and ``_``; Devanagari and Thai marks too).
SLASH_NAME: typing.Final = re.compile(r"^[-_\w\u0900-\u097f\u0e00-\u0e7f]{1,32}$")
DESCRIPTION_LIMIT: typing.Final = 100
#: USER and MESSAGE commands: "1-32 characters", mixed case and spaces allowed.
MENU_NAME_LIMIT: typing.Final = 32


def check_slash_name(what: str, name: str) -> None:
    """A CHAT_INPUT command's or an option's name: the regex, and lowercase where the
    letters have a lowercase form."""
    if not SLASH_NAME.match(name) or name != name.lower():
        raise ValueError(f"{what}: name {name!r} must be 1-32 lowercase letters, digits, - or _")


def check_menu_name(what: str, name: str) -> None:
    if not 1 <= len(name) <= MENU_NAME_LIMIT or not name.strip():
        raise ValueError(f"{what}: a context menu name has 1-32 characters, not {name!r}")


def check(
    what: str,
    names: typing.Mapping[str, str],
    descriptions: typing.Mapping[str, str],
    *,
    menu: bool = False,
) -> None:
    """Raise ``ValueError`` naming the first locale or text Discord would refuse. ``menu``: a
    context-menu command's (free-form names, and no description to localise)."""
    for locale in (*names, *descriptions):
        if locale not in LOCALES:
            raise ValueError(f"{what}: {locale!r} is not a Discord locale ({sorted(LOCALES)})")
    for locale, name in names.items():
        if menu:
            check_menu_name(f"{what} [{locale}]", name)
        else:
            check_slash_name(f"{what} [{locale}]", name)
    if menu and descriptions:
        raise ValueError(f"{what}: context menu commands have no description to localise")
    for locale, description in descriptions.items():
        if not 1 <= len(description) <= DESCRIPTION_LIMIT:
            raise ValueError(f"{what} [{locale}]: a description of 1-100 characters")


def differing(texts: typing.Mapping[str, str], default: str) -> dict[str, str]:
    """Localization: "Any localized values that are identical to the default will be
    ignored" by Discord, so they are left out here too (else every sync would see a change)."""
    return {locale: text for locale, text in texts.items() if text != default}


def check_option_names(
    what: str, names: typing.Sequence[tuple[str, typing.Mapping[str, str]]]
) -> None:
    """Localization: "Localized option names ... must be distinct from all other default
    option names of that command, as well as all other option names within that locale"."""
    defaults = {name for name, _ in names}
    by_locale: dict[str, set[str]] = {}
    for name, localized in names:
        for locale, text in localized.items():
            if text in defaults or text in by_locale.setdefault(locale, set()):
                raise ValueError(f"{what}: option {name!r} [{locale}] name {text!r} is taken")
            by_locale[locale].add(text)
