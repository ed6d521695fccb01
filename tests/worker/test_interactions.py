"""When the worker defers an interaction (``worker.interactions.defer_delay``): 2 s after the
earlier of Discord's creation (the id's snowflake time) and the gateway's receipt. Pure
arithmetic on given times, no clock."""

from __future__ import annotations

import datetime as dt

import hikari

from worker import interactions


def payload_created_at(seconds: float) -> dict[str, str]:
    """An INTERACTION_CREATE's fields that matter here: an id Discord minted at ``seconds``."""
    minted = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return {"id": str(int(hikari.Snowflake.from_data(minted, 0, 0, 0)))}


def test_an_interaction_that_reached_the_gateway_late_is_deferred_at_once() -> None:
    now = 1_800_000_000.0
    # Created 2.5 s ago (held in a take-over's replay), received by the gateway just now.
    delay = interactions.defer_delay(payload_created_at(now - 2.5), received_at=now, now=now)
    assert delay == 0.0


def test_an_interaction_received_at_once_is_deferred_two_seconds_after_its_creation() -> None:
    now = 1_800_000_000.0
    delay = interactions.defer_delay(payload_created_at(now - 0.5), received_at=now, now=now)
    assert abs(delay - (interactions.DEFER_AFTER - 0.5)) < 0.01  # the id's millisecond precision


def test_a_clock_behind_discords_never_defers_later_than_the_receipt_says() -> None:
    now = 1_800_000_000.0
    # Discord's clock 5 s ahead of ours: the id claims a creation in our future.
    delay = interactions.defer_delay(payload_created_at(now + 5), received_at=now, now=now)
    assert delay == interactions.DEFER_AFTER
