from __future__ import annotations

import asyncio
import io
import logging

import orjson
import pytest

from shared import logging as shard_logging
from shared import secret

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789"

pytestmark = pytest.mark.usefixtures("root_logging")


@pytest.fixture
def stream(root_logging: None) -> io.StringIO:
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


def test_process_fields_and_the_current_context_go_on_every_line() -> None:
    out = io.StringIO()
    handler = shard_logging.configure("INFO", stream=out, fields={"pool": "main", "role": "worker"})
    log = logging.getLogger("mybot")
    try:
        log.info("outside")
        with shard_logging.context(shard=2, guild="81", event="MESSAGE_CREATE"):
            log.info("inside")
            with shard_logging.context(guild=None, command="ban"):  # None: left as it was
                log.info("nested", extra={"event": "own"})  # a record's own field wins
        log.info("after")
    finally:
        logging.getLogger().removeHandler(handler)
    outside, inside, nested, after = lines(out)
    assert (outside["pool"], outside["role"]) == ("main", "worker")
    assert "guild" not in outside
    assert (inside["shard"], inside["guild"], inside["event"]) == (2, "81", "MESSAGE_CREATE")
    assert (nested["guild"], nested["command"], nested["event"]) == ("81", "ban", "own")
    assert "shard" not in after
    assert after["pool"] == "main"


async def test_tasks_started_inside_a_context_keep_it_and_others_do_not_see_it() -> None:
    out = io.StringIO()
    handler = shard_logging.configure("INFO", stream=out)
    log = logging.getLogger("mybot")

    async def handler_of(guild: str) -> None:
        with shard_logging.context(guild=guild):
            await asyncio.sleep(0)
            background = asyncio.ensure_future(asyncio.sleep(0))
            await background
            log.info("handled")

    try:
        await asyncio.gather(handler_of("1"), handler_of("2"))
    finally:
        logging.getLogger().removeHandler(handler)
    assert sorted(str(entry["guild"]) for entry in lines(out)) == ["1", "2"]


def test_secrets_in_context_fields_are_redacted(stream: io.StringIO) -> None:
    with shard_logging.context(url="amqp://user:hunter2@rabbit:5672/"):
        logging.getLogger("shardline.test").info("connecting")
    [entry] = lines(stream)
    assert "hunter2" not in str(entry)


def test_a_context_field_named_like_a_record_attribute_is_refused() -> None:
    with pytest.raises(ValueError, match=r"clash with log record attributes: \['message'\]"):  # noqa: SIM117
        with shard_logging.context(message="x"):
            pass


def test_the_broker_clients_frame_lines_stay_quiet_at_debug() -> None:
    shard_logging.configure("DEBUG", stream=io.StringIO())
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("aiormq").level == logging.INFO
    assert logging.getLogger("aio_pika").level == logging.INFO
    shard_logging.configure("WARNING", stream=io.StringIO())
    assert logging.getLogger("aiormq").level == logging.WARNING


def test_token_fields_and_interaction_tokens_are_redacted(stream: io.StringIO) -> None:
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXRzZWNyZXRzZWNyZXQ"
    payload = {"id": "1", "token": token, "webhook": {"token": "w3bh00ks3cr3t"}}
    logging.getLogger("t").warning("payload %r", payload, extra={"d": orjson.dumps(payload)})
    logging.getLogger("t").warning("bare %s", token)
    line = stream.getvalue()
    assert token not in line
    assert "w3bh00ks3cr3t" not in line
    assert line.count("***") >= 4
    assert shard_logging.redact("token_type: Bearer") == "token_type: Bearer"
