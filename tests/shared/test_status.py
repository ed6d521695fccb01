"""The gateway status record: its wire form and the one rule of what "serving" means."""

from __future__ import annotations

import pytest

from shared import status

NOW = 1_000_000.0


def gateway(**fields: object) -> status.GatewayStatus:
    values: dict[str, object] = {
        "gateway": "main-1",
        "pool": "main",
        "shard_count": 4,
        "at": NOW,
        "shards": {0: status.ShardStatus(connected=True, latency=0.04)},
    }
    values.update(fields)
    return status.GatewayStatus(**values)  # type: ignore[arg-type]


def test_the_wire_form_round_trips() -> None:
    original = gateway(
        leased=True,
        draining=True,
        backlog=7,
        shards={
            0: status.ShardStatus(connected=True, latency=0.04, identifies=1, events=9),
            3: status.ShardStatus(connected=False, queued=True),
        },
        lavalink={"sessions": 1, "resumed": 2},
    )
    raw = original.to_json()
    assert b'"3":{"connected":false' in raw  # shard ids are JSON object keys
    assert status.GatewayStatus.from_json(raw) == original


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"pool": "main"}', b'{"gateway": "g", "pool": "p", "at": "x"}']
)
def test_an_unreadable_status_is_none_not_an_exception(raw: bytes) -> None:
    assert status.GatewayStatus.from_json(raw) is None


def test_fields_a_newer_gateway_adds_are_ignored_by_an_older_reader() -> None:
    body = gateway().to_dict()
    body["shards"]["0"]["future_field"] = 1
    body["future_field"] = True
    assert status.GatewayStatus.from_dict(body) == gateway()


@pytest.mark.parametrize(
    ("fields", "serves"),
    [
        ({}, True),
        ({"standby": True}, False),
        ({"retired": True}, False),
        ({"stopping": True}, False),
        ({"shard_count": 8}, False),
        ({"at": NOW - status.STALE_AFTER - 0.001}, False),
        ({"at": NOW - status.STALE_AFTER}, True),
    ],
)
def test_a_layout_serves_only_while_fresh_and_publishing(
    fields: dict[str, object], serves: bool
) -> None:
    assert gateway(**fields).serves(4, now=NOW) is serves


def test_since_and_connected_narrow_what_counts() -> None:
    none_up = gateway(shards={0: status.ShardStatus(connected=False)})
    assert none_up.serves(4, now=NOW)
    assert not none_up.serves(4, now=NOW, connected=True)
    assert gateway().serves(4, now=NOW, connected=True)
    assert not gateway().serves(4, now=NOW, since=NOW + 1)


@pytest.mark.parametrize(
    ("fields", "draining", "word"),
    [
        ({}, False, "serving"),
        ({}, True, "draining"),
        ({"draining": True}, False, "draining"),
        ({"stopping": True}, True, "stopping"),
        ({"standby": True}, True, "standby"),
        ({"retired": True, "standby": True}, False, "retired"),
    ],
)
def test_one_word_for_operators(fields: dict[str, object], draining: bool, word: str) -> None:
    assert gateway(**fields).state(draining=draining) == word
