"""A secret never shows itself in logs, reprs or tracebacks (``shared.secret``)."""

from __future__ import annotations

import logging
import traceback
import typing

from shared.secret import Secret

if typing.TYPE_CHECKING:
    import pytest

VALUE = "hunter2-token-value"


def test_str_repr_and_formatting_show_a_mask() -> None:
    secret = Secret(VALUE)
    for shown in (str(secret), repr(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert VALUE not in shown
        assert "***" in shown


def test_reveal_gives_the_value() -> None:
    assert Secret(VALUE).reveal() == VALUE


def test_a_logged_or_raised_secret_stays_masked(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(VALUE)
    with caplog.at_level(logging.INFO):
        logging.getLogger("tests.secret").info("connecting with %s", secret)
    assert VALUE not in caplog.text
    try:
        raise RuntimeError(secret)
    except RuntimeError:
        assert VALUE not in traceback.format_exc()


def test_equality_and_hash_follow_the_value() -> None:
    assert Secret(VALUE) == Secret(VALUE)
    assert Secret(VALUE) != Secret("other")
    assert Secret(VALUE) != VALUE, "a secret is not equal to its plain string"
    assert len({Secret(VALUE), Secret(VALUE), Secret("other")}) == 2


def test_truthiness_says_whether_one_is_set() -> None:
    assert Secret(VALUE)
    assert not Secret("")


def test_it_has_no_dict_to_leak_through() -> None:
    assert not hasattr(Secret(VALUE), "__dict__")
