"""Where a command's words go: text for a person, or with ``--json`` one JSON document alone
on stdout and the progress on stderr (``cli.output``)."""

from __future__ import annotations

import typing

import orjson

from cli import output

if typing.TYPE_CHECKING:
    import pytest

DOCUMENT = {"pool": "main", "gateways": [{"id": "g1", "shards": [0, 1]}]}


def test_text_mode_prints_progress_and_text_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    out = output.Output(as_json=False)
    out.progress("waiting for g1 to drain")
    out.result(DOCUMENT, "g1 drained")
    captured = capsys.readouterr()
    assert captured.out == "waiting for g1 to drain\ng1 drained\n"
    assert captured.err == ""


def test_text_mode_without_text_prints_nothing_more(capsys: pytest.CaptureFixture[str]) -> None:
    output.Output(as_json=False).result(DOCUMENT, None)
    assert capsys.readouterr().out == ""


def test_json_mode_keeps_stdout_one_parseable_document(capsys: pytest.CaptureFixture[str]) -> None:
    out = output.Output(as_json=True)
    out.progress("waiting for g1 to drain")
    out.result(DOCUMENT, "g1 drained")
    captured = capsys.readouterr()
    assert orjson.loads(captured.out) == DOCUMENT
    assert captured.out.endswith("}\n")
    assert "g1 drained" not in captured.out
    assert captured.err == "waiting for g1 to drain\n"


def test_json_mode_prints_the_document_even_without_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output.Output(as_json=True).result({"ok": True}, None)
    assert orjson.loads(capsys.readouterr().out) == {"ok": True}
