"""Shard restart requests as the holding gateway checks them (``gateway.restarts``)."""

from __future__ import annotations

import time
import typing

import pytest

from gateway import restarts
from shared import admin
from shared.secret import Secret

KEY: typing.Final = Secret("k" * 64)
SCOPE: typing.Final = "shardline:main"


def request(shard: int, shard_count: int, *, at: float | None = None, key: Secret = KEY) -> str:
    return admin.sign(key, SCOPE, admin.RESTART_SHARD, at=at, shard=shard, shard_count=shard_count)


def reason(caplog: pytest.LogCaptureFixture) -> str:
    record = caplog.records[-1]
    assert record.getMessage() == "restart request refused"
    return str(getattr(record, "reason", ""))


def test_a_request_is_followed_once(caplog: pytest.LogCaptureFixture) -> None:
    checker = restarts.RestartRequests(KEY, SCOPE)
    token = request(3, 8)
    assert checker.vouched_for(3, 8, token)
    assert not checker.vouched_for(3, 8, token)  # written back: a replay
    assert reason(caplog) == "already followed (a replay)"
    assert checker.vouched_for(3, 8, request(3, 8, at=time.time() + 1))


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: request(4, 8), "signed for another shard"),
        (lambda: request(3, 16), "signed for another shard"),  # another layout's shard 3
        (lambda: request(3, 8, at=time.time() - admin.RESTART_MAX_AGE - 1), "older than 60 s"),
        (lambda: request(3, 8, key=Secret("x" * 64)), "bad signature"),
        (lambda: str(time.time()), "not a signed action"),
    ],
)
def test_what_is_refused(
    make: typing.Callable[[], str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Signed when the test runs: a collection long before would make every one stale.
    assert not restarts.RestartRequests(KEY, SCOPE).vouched_for(3, 8, make())
    assert reason(caplog).startswith(why)


def test_without_a_key_nothing_is_followed(caplog: pytest.LogCaptureFixture) -> None:
    assert not restarts.RestartRequests(None, SCOPE).vouched_for(3, 8, request(3, 8))
    assert reason(caplog) == "ADMIN_KEY is not set on this process"
