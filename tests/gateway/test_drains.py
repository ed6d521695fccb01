"""Drain requests as every gateway reads them (``gateway.drains``): signed, for one gateway,
not replayable after an undrain."""

from __future__ import annotations

import logging
import typing

from gateway import drains
from shared import admin
from shared.secret import Secret

if typing.TYPE_CHECKING:
    import pytest

KEY: typing.Final = Secret("k" * 64)
SCOPE: typing.Final = "shardline:main"
LIVE: typing.Final = ("main-a", "main-b")


def drain(gateway: str, at: float, key: Secret = KEY) -> str:
    return admin.sign(key, SCOPE, admin.DRAIN, at=at, gateway=gateway)


def test_the_drained_gateway_and_its_peer_agree() -> None:
    requests = {"main-b": drain("main-b", 100.0)}
    ours = drains.DrainRequests(KEY, SCOPE, "main-b")
    peer = drains.DrainRequests(KEY, SCOPE, "main-a")
    assert ours.vouched_for(requests, LIVE) == {"main-b"}
    assert peer.vouched_for(requests, LIVE) == {"main-b"}


def test_unsigned_foreign_and_misdirected_requests_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "shardline.gateway.drains")
    ours = drains.DrainRequests(KEY, SCOPE, "main-b")
    requests = {
        "main-b": drain("main-a", 100.0),  # main-a's request, written under main-b
        "main-a": drain("main-a", 100.0, Secret("x" * 64)),
    }
    for _ in range(3):
        assert ours.vouched_for(requests, LIVE) == set()
    reasons = {
        (r.levelname, getattr(r, "gateway", ""), getattr(r, "reason", "")) for r in caplog.records
    }
    assert reasons == {
        ("WARNING", "main-b", "signed for another gateway"),
        ("DEBUG", "main-a", "bad signature (signed with another ADMIN_KEY, or altered)"),
    }
    assert len(caplog.records) == 2  # once per request, not once per heartbeat
    assert (
        drains.DrainRequests(None, SCOPE, "main-b").vouched_for(
            {"main-b": drain("main-b", 100.0)}, LIVE
        )
        == set()
    )


def test_a_drain_written_back_after_an_undrain_is_refused_and_a_new_one_is_followed() -> None:
    ours = drains.DrainRequests(KEY, SCOPE, "main-b")
    first = drain("main-b", 100.0)
    assert ours.vouched_for({"main-b": first}, LIVE) == {"main-b"}
    assert ours.vouched_for({}, LIVE) == set()  # shardline undrain
    assert ours.vouched_for({"main-b": first}, LIVE) == set()  # the old request, replayed
    assert ours.vouched_for({"main-b": drain("main-b", 99.0)}, LIVE) == set()
    assert ours.vouched_for({"main-b": drain("main-b", 200.0)}, LIVE) == {"main-b"}
