from __future__ import annotations

import typing

import hypothesis
import orjson
import pytest
from hypothesis import strategies as st

from shared import envelope

_WIRE_FIELDS = ("v", "pool", "gateway", "reply_to", "shard", "session", "seq", "t", "d", "ts")


def sample(seq: int = 42, **changes: typing.Any) -> envelope.EventEnvelope:
    values: dict[str, typing.Any] = {
        "pool": "main",
        "gateway": "gw-1",
        "reply_to": "shardline.main.gateway.gw-1",
        "shard_id": 3,
        "shard_count": 16,
        "session": "abc",
        "seq": seq,
        "t": "MESSAGE_CREATE",
        "d": {"id": "1", "content": "hi", "nested": [1, {"x": None}]},
        "ts": 1732240000.5,
    }
    values.update(changes)
    return envelope.EventEnvelope(**values)


def test_round_trip_keeps_d_untouched() -> None:
    original = sample()
    body = envelope.encode(original)
    wire = orjson.loads(body)
    assert wire["v"] == 1
    assert wire["shard"] == [3, 16]
    assert wire["d"] == original.d
    assert envelope.decode(body) == original
    assert envelope.decode_message(body) == [original]


def test_batch_round_trip() -> None:
    batch = [sample(seq) for seq in range(1, 6)]
    body = envelope.encode_batch(batch)
    assert isinstance(orjson.loads(body), list)
    assert envelope.decode_message(body) == batch
    assert envelope.encode_batch(batch[:1]) == envelope.encode(batch[0])
    with pytest.raises(ValueError, match="at least one"):
        envelope.encode_batch([])


def test_dedupe_key() -> None:
    assert sample().dedupe_key == "main:3:abc:42"


def test_unknown_version_is_its_own_error() -> None:
    wire = sample().to_dict()
    wire["v"] = 2
    with pytest.raises(envelope.UnsupportedVersionError) as caught:
        envelope.decode(orjson.dumps(wire))
    assert "version 2" in caught.value.reason


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda w: w.pop("pool"), "'pool'"),
        (lambda w: w.update(shard=[16, 16]), "'shard'"),
        (lambda w: w.update(shard=[1]), "'shard'"),
        (lambda w: w.update(seq=-1), "'seq'"),
        (lambda w: w.update(seq="1"), "'seq'"),
        (lambda w: w.update(ts="now"), "'ts'"),
        (lambda w: w.pop("d"), "'d'"),
        (lambda w: w.update(t=""), "'t'"),
    ],
)
def test_malformed_fields(
    mutate: typing.Callable[[dict[str, typing.Any]], object], reason: str
) -> None:
    wire = sample().to_dict()
    mutate(wire)
    with pytest.raises(envelope.MalformedEnvelopeError) as caught:
        envelope.decode(orjson.dumps(wire))
    assert reason in caught.value.reason


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"42", b'"x"', b"[1]"])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode_message(body)


def test_oversized_body_is_refused_unread() -> None:
    with pytest.raises(envelope.MalformedEnvelopeError, match="exceeds"):
        envelope.decode(b" " * (envelope.MAX_MESSAGE_BYTES + 1))


# --- fuzzing: whatever arrives, the decoder answers with envelopes or an EnvelopeError ---------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON encoders can write
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELD_VALUES = st.one_of(
    _JSON,
    st.lists(st.integers(min_value=-3, max_value=20), min_size=0, max_size=3),
)


def _decodes_or_explains(body: bytes) -> None:
    try:
        decoded = envelope.decode_message(body)
    except envelope.EnvelopeError as exc:
        reason = str(exc)  # for the dead-letter queue
    else:
        assert decoded
        for item in decoded:
            assert isinstance(item, envelope.EventEnvelope)
            assert 0 <= item.shard_id < item.shard_count
        return
    assert reason
    assert "\n" not in reason


@hypothesis.given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(body: bytes) -> None:
    _decodes_or_explains(body)


@hypothesis.given(st.dictionaries(st.sampled_from(list(_WIRE_FIELDS)), _FIELD_VALUES))
def test_fuzz_envelope_shaped_objects(fields: dict[str, typing.Any]) -> None:
    _decodes_or_explains(orjson.dumps(fields))


@hypothesis.given(
    st.sampled_from(list(_WIRE_FIELDS)), _FIELD_VALUES, st.integers(min_value=1, max_value=3)
)
def test_fuzz_one_field_of_a_valid_batch_changed(name: str, value: typing.Any, size: int) -> None:
    batch = [orjson.loads(envelope.encode(sample(seq))) for seq in range(1, size + 1)]
    batch[-1][name] = value
    _decodes_or_explains(orjson.dumps(batch))
