"""docs/migrating.md's examples are real code: every Shardline and hikari example passes mypy
strict as it is, and the listener example, loaded as a plugin on a worker, answers against the
Discord emulator."""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys
import typing

import pytest

from tests.worker import test_consumer as consumer_tests
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
DOC: typing.Final = ROOT / "docs" / "migrating.md"
#: What the line before a ```python block says it is: checked code (``shardline``, with an
#: optional name, and ``hikari``) or code of a library not installed here (``discord.py``).
_BLOCK: typing.Final = re.compile(
    r"^[ ]*<!-- (?P<kind>shardline|hikari|discord\.py)(?:: (?P<name>[\w-]+))? -->\n"
    r"[ ]*```python\n(?P<code>.*?)^[ ]*```",
    flags=re.DOTALL | re.MULTILINE,
)


class Example(typing.NamedTuple):
    kind: str
    name: str | None
    code: str


def examples() -> list[Example]:
    """Every marked ```python block of migrating.md, de-indented (a block in a list item)."""
    text = DOC.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        indent = len(match.group(0)) - len(match.group(0).lstrip(" "))
        code = "".join(line[indent:] for line in match.group("code").splitlines(keepends=True))
        found.append(Example(match.group("kind"), match.group("name"), code))
    return found


def test_every_python_block_says_what_it_is() -> None:
    blocks = len(re.findall(r"^[ ]*```python$", DOC.read_text(), flags=re.MULTILINE))
    assert blocks == len(examples()), (
        "a ```python block of migrating.md lacks its <!-- shardline --> / <!-- hikari --> /"
        " <!-- discord.py --> marker on the line before"
    )


def test_the_discord_py_examples_are_python() -> None:
    """discord.py is not installed here: its examples are at least parsed."""
    others = [e for e in examples() if e.kind == "discord.py"]
    assert len(others) >= 3, "the discord.py examples moved"
    for example in others:
        ast.parse(example.code)


@pytest.mark.timeout(600)
def test_the_shardline_and_hikari_examples_pass_mypy_strict(tmp_path: pathlib.Path) -> None:
    checked = [e for e in examples() if e.kind != "discord.py"]
    assert sum(e.kind == "shardline" for e in checked) >= 15, "the Shardline examples moved"
    assert sum(e.kind == "hikari" for e in checked) >= 5, "the GatewayBot examples moved"
    files = []
    for number, example in enumerate(checked):
        path = tmp_path / f"migrating_{example.kind}_{number}.py"
        path.write_text(example.code)
        files.append(str(path))
    # The project's mypy configuration (pyproject.toml, from ROOT), strict as its own code.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--warn-unreachable", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_listener_example_runs_as_a_plugin_and_answers(
    stack: Stack, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [listeners] = [e for e in examples() if e.name == "listeners"]
    (tmp_path / "migrating_listeners.py").write_text(listeners.code)
    monkeypatch.syspath_prepend(str(tmp_path))
    discord = stack.discord
    async with consumer_tests.worker(
        stack, bot_module.Bot(), WORKER_PLUGINS="migrating_listeners"
    ) as replica:
        assert replica.bot.events.listened_gateway_events() == [
            "MESSAGE_CREATE",
            "MESSAGE_REACTION_ADD",
        ]
        payload = consumer_tests.message_payload(stack, "!ping")
        await consumer_tests.publish(stack, consumer_tests.item(1, "MESSAGE_CREATE", payload))
        await consumer_tests.until(
            lambda: any(c.method == "POST" for c in discord.records.rest), "the answer"
        )
    [answer] = [c for c in discord.records.rest if c.method == "POST"]
    assert answer.path == f"/channels/{payload['channel_id']}/messages"
    # No gateway wrote the channel to the cache: the event's helper answers None, as hikari's.
    assert answer.body["content"] == "pong from here"
