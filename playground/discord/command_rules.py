"""What Discord accepts as an application command, and how it stores and lists one
(Interactions > Application Commands).

Kept apart from the worker's own checks on purpose: the emulator is an independent witness of
Discord's rules, so a rule the worker gets wrong fails a test instead of agreeing with itself.
"""

from __future__ import annotations

import re
import typing

Json = dict[str, typing.Any]

#: Application Command Object > Application Command Types: CHAT_INPUT 1, USER 2, MESSAGE 3,
#: PRIMARY_ENTRY_POINT 4.
COMMAND_TYPES: typing.Final = frozenset({1, 2, 3, 4})
#: Reference > Locales.
LOCALES: typing.Final = frozenset(
    {
        "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu",
        "nl", "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru",
        "uk", "hi", "th", "zh-CN", "ja", "zh-TW", "ko",
    }
)  # fmt: skip
#: Application Command Naming: CHAT_INPUT command and option names match
#: ``^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$`` (unicode), lowercase where a lowercase
#: variant exists; "USER and MESSAGE commands may be mixed case and can include spaces".
_SLASH_NAME: typing.Final = re.compile(r"^[-_\w\u0900-\u097f\u0e00-\u0e7f]{1,32}$")
_NAME_LIMIT: typing.Final = 32
_DESCRIPTION_LIMIT: typing.Final = 100
#: Application Command Structure: ``options`` "max of 25".
_OPTIONS_LIMIT: typing.Final = 25
_SUBCOMMANDS: typing.Final = frozenset({1, 2})


def _errors() -> Json:
    return {"_errors": []}


def _name_ok(name: object, *, slash: bool) -> bool:
    if not isinstance(name, str):
        return False
    if slash:
        return bool(_SLASH_NAME.match(name)) and name == name.lower()
    return 1 <= len(name) <= _NAME_LIMIT and bool(name.strip())


def _description_ok(description: object, *, slash: bool) -> bool:
    if not slash:
        return description in (None, "")
    return isinstance(description, str) and 1 <= len(description) <= _DESCRIPTION_LIMIT


def _localization_errors(body: Json, *, slash: bool) -> Json:
    """``name_localizations`` / ``description_localizations``: "?dictionary with keys in
    available locales"; "Values follow the same restrictions as" ``name`` / ``description``."""
    errors: Json = {}
    for field, valid in (
        ("name_localizations", lambda v: _name_ok(v, slash=slash)),
        ("description_localizations", lambda v: _description_ok(v, slash=slash) and v != ""),
    ):
        given = body.get(field)
        if given is None:
            continue
        if not isinstance(given, dict):
            errors[field] = _errors()
            continue
        wrong = {k: _errors() for k, v in given.items() if k not in LOCALES or not valid(v)}
        if wrong:
            errors[field] = wrong
    return errors


def command_errors(body: Json, kind: int) -> Json:
    """The Invalid Form Body errors of a command, by field (empty: Discord accepts it)."""
    slash = kind == 1
    errors: Json = {}
    if not _name_ok(body.get("name"), slash=slash):
        errors["name"] = _errors()
    # User Commands / Message Commands: "The description field is not allowed when creating
    # user [message] commands."
    if not _description_ok(body.get("description"), slash=slash):
        errors["description"] = _errors()
    errors.update(_localization_errors(body, slash=slash))
    options = body.get("options") or []
    if options and not slash:  # Application Command Structure: options are CHAT_INPUT only
        errors["options"] = _errors()
    elif options:
        option_errors = _options_errors(options)
        if option_errors:
            errors["options"] = option_errors
    return errors


def _options_errors(options: object) -> Json:
    if not isinstance(options, list) or len(options) > _OPTIONS_LIMIT:
        return _errors()
    errors: Json = {}
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            errors[str(index)] = _errors()
            continue
        found: Json = {}
        if not _name_ok(option.get("name"), slash=True):
            found["name"] = _errors()
        if not _description_ok(option.get("description"), slash=True):
            found["description"] = _errors()
        found.update(_localization_errors(option, slash=True))
        if option.get("type") in _SUBCOMMANDS and option.get("options"):
            nested = _options_errors(option["options"])
            if nested:
                found["options"] = nested
        if found:
            errors[str(index)] = found
    if not errors and not _distinct_names(options):
        return _errors()
    return errors


def _distinct_names(options: list[Json]) -> bool:
    """Localization: "Localized option names ... must be distinct from all other default
    option names of that command, as well as all other option names within that locale"."""
    defaults = [o["name"] for o in options]
    if len(set(defaults)) != len(defaults):
        return False
    by_locale: dict[str, list[str]] = {}
    for option in options:
        for locale, name in (option.get("name_localizations") or {}).items():
            if name != option["name"] and name in defaults:
                return False
            by_locale.setdefault(locale, []).append(name)
    return all(len(set(names)) == len(names) for names in by_locale.values())


def localizations(body: Json) -> Json:
    """The dictionaries as stored: "Any localized values that are identical to the default
    will be ignored" (an empty or absent dictionary is returned as ``null``)."""
    stored: Json = {}
    for field, default in (
        ("name_localizations", body.get("name")),
        ("description_localizations", body.get("description")),
    ):
        kept = {k: v for k, v in (body.get(field) or {}).items() if v != default}
        stored[field] = kept or None
    return stored


def stored_option(option: Json) -> Json:
    stored = {**option, **localizations(option)}
    if option.get("options"):
        stored["options"] = [stored_option(o) for o in option["options"]]
    return stored


def localized(command: Json, locale: str | None) -> Json:
    """A command as a batch GET without ``with_localizations`` lists it (recursively for its
    options)."""
    listed = {
        k: v
        for k, v in command.items()
        if k not in ("name_localizations", "description_localizations")
    }
    if locale:
        for field, into in (
            ("name_localizations", "name_localized"),
            ("description_localizations", "description_localized"),
        ):
            value = (command.get(field) or {}).get(locale)
            if value is not None:
                listed[into] = value
    if command.get("options"):
        listed["options"] = [localized(o, locale) for o in command["options"]]
    return listed
