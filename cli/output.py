"""Where a command's words go.

The result goes to stdout: text for a person, or with ``--json`` one JSON document and
nothing else, so that ``shardline status --json | jq`` always parses. Progress goes to stdout
with the text and to stderr with ``--json``; errors always go to stderr (``cli.__main__``).
"""

from __future__ import annotations

import sys
import typing

import orjson

__all__ = ("Output",)

Document = typing.Mapping[str, typing.Any]


class Output:
    """A command's result and progress, as text or as JSON."""

    __slots__ = ("as_json",)

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def progress(self, line: str) -> None:
        """A line while the command works (waiting for a drain, a re-shard's steps)."""
        print(line, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def result(self, document: Document, text: str | None) -> None:
        """The command's answer: ``document`` with ``--json``, otherwise ``text`` (None: the
        progress said it all)."""
        if self.as_json:
            sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
            sys.stdout.flush()
        elif text is not None:
            print(text, flush=True)
