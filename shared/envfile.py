"""The ``.env`` file, for native runs: what Compose reads for containers, the processes read
when started by hand (``python -m gateway`` in the project's directory).

``KEY=VALUE`` lines, ``export KEY=VALUE`` too, ``#`` comments and blank lines; a value may be
in single quotes (taken as it is) or double quotes (``\\n``, ``\\"`` and ``\\\\`` escapes), and
an unquoted value ends at `` #``. A variable set in the environment wins over the file, as
with Compose. An empty value counts as unset (Compose's ``${VAR:-default}``). ``ENV_FILE``
names another file; ``ENV_FILE=`` (empty) reads none.
"""

from __future__ import annotations

import os
import pathlib
import re
import typing

__all__: typing.Sequence[str] = ("EnvFileError", "environment", "parse")

_LINE: typing.Final = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_ESCAPES: typing.Final = {"n": "\n", '"': '"', "\\": "\\"}


class EnvFileError(ValueError):
    """A line of the file is not ``KEY=VALUE``; the message names the file and line, never
    its value (it may hold a secret)."""


def parse(text: str, *, source: str = ".env") -> dict[str, str]:
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise EnvFileError(f"{source} line {number}: expected KEY=VALUE")
        key, value = match.groups()
        found[key] = _value(value, f"{source} line {number}")
    return found


def _value(value: str, where: str) -> str:
    if value[:1] in {"'", '"'}:
        quote = value[0]
        end = _closing(value, quote)
        if end is None:
            raise EnvFileError(f"{where}: unterminated {quote} quote")
        rest = value[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise EnvFileError(f"{where}: text after the closing quote")
        inner = value[1:end]
        if quote == '"':
            inner = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), inner)
        return inner
    return value.split(" #", 1)[0].strip()


def _closing(value: str, quote: str) -> int | None:
    index = 1
    while index < len(value):
        if value[index] == "\\" and quote == '"':
            index += 2
            continue
        if value[index] == quote:
            return index
        index += 1
    return None


def environment(
    env: typing.Mapping[str, str] | None = None, *, directory: pathlib.Path | None = None
) -> dict[str, str]:
    """The process environment over the ``.env`` file's values (empty ones dropped)."""
    env = dict(os.environ if env is None else env)
    name = env.get("ENV_FILE", ".env")
    if not name:
        return env
    path = pathlib.Path(name)
    if not path.is_absolute():
        path = (directory or pathlib.Path.cwd()) / path
    try:
        text = path.read_text()
    except FileNotFoundError:
        if "ENV_FILE" in env:
            raise EnvFileError(f"ENV_FILE: {name} does not exist") from None
        return env
    except OSError as exc:
        raise EnvFileError(f"{name}: cannot be read ({exc.strerror})") from None
    for key, value in parse(text, source=name).items():
        if value and not env.get(key):
            env[key] = value
    return env
