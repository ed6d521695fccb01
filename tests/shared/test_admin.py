"""Signed operator actions (``shared.admin``): what a gateway believes, and what it refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import typing

import hypothesis
import orjson
import pytest
from hypothesis import strategies as st

from shared import admin
from shared.secret import Secret

KEY: typing.Final = Secret("a" * 64)
OTHER_KEY: typing.Final = Secret("b" * 64)
SCOPE: typing.Final = "shardline:main"


def test_a_signed_action_reads_back_with_its_fields() -> None:
    token = admin.sign(KEY, SCOPE, admin.DRAIN, at=1000.0, gateway="main-1a2b3c4d")
    body = admin.verify(KEY, SCOPE, token, admin.DRAIN, now=1001.0)
    assert body == {
        "action": "drain",
        "scope": SCOPE,
        "at": 1000.0,
        "gateway": "main-1a2b3c4d",
    }
    assert admin.verify(KEY, SCOPE, token.encode(), admin.DRAIN, now=1001.0) == body
    assert KEY.reveal() not in token


def _reason(key: Secret | None, token: str | None, **kwargs: typing.Any) -> str:
    with pytest.raises(admin.ActionRefusedError) as refused:
        admin.verify(key, SCOPE, token, kwargs.pop("action", admin.DRAIN), **kwargs)
    return str(refused.value)


def test_what_is_refused_and_why() -> None:
    token = admin.sign(KEY, SCOPE, admin.DRAIN, gateway="main-1")
    assert _reason(None, token) == "ADMIN_KEY is not set on this process"
    assert _reason(KEY, None) == "not signed"
    assert _reason(KEY, "1") == "not a signed action"  # what the CLI wrote before signing
    assert _reason(KEY, "!!!.abc") == "not a signed action"
    assert _reason(KEY, "x" * 5000) == "not a signed action"
    assert _reason(OTHER_KEY, token).startswith("bad signature")
    assert _reason(KEY, token, action=admin.RESTART_SHARD) == (
        "signed for another action, not restart-shard"
    )
    with pytest.raises(admin.ActionRefusedError, match="another pool"):
        admin.verify(KEY, "shardline:premium", token, admin.DRAIN)


def test_an_altered_payload_breaks_the_signature() -> None:
    token = admin.sign(KEY, SCOPE, admin.DRAIN, gateway="main-1")
    encoded, mac = token.split(".")
    body = orjson.loads(base64.urlsafe_b64decode(encoded))
    body["gateway"] = "main-2"  # the same request, pointed at another gateway
    forged = base64.urlsafe_b64encode(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).decode()
    assert _reason(KEY, f"{forged}.{mac}").startswith("bad signature")


def test_age_and_clock_skew() -> None:
    token = admin.sign(KEY, SCOPE, admin.RESTART_SHARD, at=1000.0, shard=3)
    fresh = admin.verify(KEY, SCOPE, token, admin.RESTART_SHARD, max_age=300, now=1299.0)
    assert fresh["shard"] == 3
    assert "older than 300 s" in _reason(
        KEY, token, action=admin.RESTART_SHARD, max_age=300, now=1301.0
    )
    # Without max_age (a drain lasts until it is taken back) age does not matter.
    assert admin.verify(KEY, SCOPE, token, admin.RESTART_SHARD, now=10**9)["shard"] == 3
    assert "future" in _reason(KEY, token, action=admin.RESTART_SHARD, now=1000.0 - 31)


@hypothesis.given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
@hypothesis.settings(max_examples=300)
def test_fuzz_any_stored_value_is_refused_with_a_reason(value: str | bytes) -> None:
    with pytest.raises(admin.ActionRefusedError) as refused:
        admin.verify(KEY, SCOPE, value, admin.DRAIN)
    assert str(refused.value)
    assert KEY.reveal() not in str(refused.value)


@hypothesis.given(st.binary(max_size=200))
def test_fuzz_a_validly_signed_payload_that_is_not_an_action_is_refused(payload: bytes) -> None:
    """Even with the key, a payload that is not an action object is refused, not a crash."""
    mac = hmac.new(KEY.reveal().encode(), payload, hashlib.sha256).hexdigest()
    token = f"{base64.urlsafe_b64encode(payload).decode()}.{mac}"
    with pytest.raises(admin.ActionRefusedError):
        admin.verify(KEY, SCOPE, token, admin.DRAIN)
