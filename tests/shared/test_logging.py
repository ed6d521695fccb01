from __future__ import annotations

import io
import logging

import orjson
import pytest

from shared import logging as shard_logging
from shared import secret

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    shard_logging.configure("DEBUG", stream=out)
    return out


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_are_json_with_extra_fields(stream: io.StringIO) -> None:
    logging.getLogger("shardline.test").info("shard %s ready", 3, extra={"shard": 3})
    [entry] = lines(stream)
    assert entry["msg"] == "shard 3 ready"
    assert entry["level"] == "INFO"
    assert entry["shard"] == 3


def test_registered_token_in_an_exception_is_redacted(stream: io.StringIO) -> None:
    token = "a-registered-secret-value"
    shard_logging.register_secret(secret.Secret(token))
    try:
        raise RuntimeError(f"login failed for {token}")
    except RuntimeError:
        logging.getLogger("shardline.test").exception("could not start")
    output = stream.getvalue()
    assert token not in output
    assert "login failed for ***" in output


def test_token_shaped_values_in_urls_and_headers_are_redacted(stream: io.StringIO) -> None:
    log = logging.getLogger("shardline.test")
    log.warning("GET https://discord.com/api/v10/gateway?token=%s failed", "abc123secret")
    log.warning("headers: %s", {"Authorization": f"Bot {TOKEN}"})
    log.warning("connecting to amqp://shardline:p4ssw0rd@rabbit:5672/")
    log.warning("POST /interactions/123/aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4/callback")
    log.warning("raw %s", TOKEN)
    output = stream.getvalue()
    for leaked in ("abc123secret", TOKEN, "p4ssw0rd", "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4"):
        assert leaked not in output
    assert "amqp://shardline:***@rabbit:5672/" in output


def test_secret_repr_is_masked() -> None:
    value = secret.Secret(TOKEN)
    assert TOKEN not in repr(value)
    assert TOKEN not in str(value)
    assert TOKEN not in f"{value}"
    assert value.reveal() == TOKEN


def test_text_format_for_terminals_is_readable_and_redacted() -> None:
    stream = io.StringIO()
    handler = shard_logging.configure("INFO", fmt="text", stream=stream)
    try:
        shard_logging.register_secret("super-secret-value")
        logging.getLogger("shardline.test").warning(
            "shard down", extra={"shard": 3, "token": "super-secret-value"}
        )
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue()
    assert "WARNING" in line
    assert "shardline.test shard down" in line
    assert "shard=3" in line
    assert "super-secret-value" not in line
    assert not line.startswith("{")
