"""Structured (JSON lines) logs that never print a secret, with the context they came from.

Every line carries the process's own fields (``pool``, ``role``: :func:`configure`) and those
of what it was doing (``shard``, ``guild``, ``event`` while a worker runs an event's
handlers: :func:`context`), so a bot author's own ``logging`` calls inside a handler say
which guild they were about without passing anything.

Redaction runs on the finished line — message, arguments, extra fields and the formatted
traceback alike — so a token inside an exception or a URL is masked wherever it hides:

* every value registered with :func:`register_secret` (the configured token, passwords);
* anything shaped like a Discord bot token;
* passwords in URLs (``amqp://user:***@host``);
* ``Authorization`` header values and ``token=`` query parameters;
* interaction and webhook tokens in Discord URL paths;
* any field named ``token`` (or ``*_token``) in JSON or a Python repr (an interaction's
  payload, a webhook's), and anything shaped like an interaction token.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import re
import sys
import threading
import time
import types
import typing

import orjson

from shared import secret

__all__: typing.Sequence[str] = (
    "JsonFormatter",
    "configure",
    "context",
    "redact",
    "register_secret",
)

MASK: typing.Final[str] = "***"
_PATTERNS: typing.Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Discord bot tokens: base64 user id, timestamp, HMAC.
    (re.compile(r"[A-Za-z\d_-]{23,28}\.[A-Za-z\d_-]{6,7}\.[A-Za-z\d_-]{27,}"), MASK),
    # scheme://user:password@host
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)"), rf"\g<pre>{MASK}"),
    # Authorization: Bot xxx / Bearer xxx
    (
        re.compile(
            r"(?P<pre>authorization['\"]?\s*[:=]\s*['\"]?(?:bot|bearer)?\s*)[^\s'\",}]+",
            re.IGNORECASE,
        ),
        rf"\g<pre>{MASK}",
    ),
    # ?token=... &password=...
    (
        re.compile(r"(?P<pre>[?&](?:token|password|secret)=)[^&\s'\"]+", re.IGNORECASE),
        rf"\g<pre>{MASK}",
    ),
    # /interactions/{id}/{token}/callback and /webhooks/{id}/{token}
    (
        re.compile(r"(?P<pre>/(?:interactions|webhooks)/\d+/)[A-Za-z0-9_.-]{20,}"),
        rf"\g<pre>{MASK}",
    ),
    # "token": "..." / 'token': '...' / token=... in a payload, a repr or an f-string: an
    # interaction's token rides in its payload, a webhook's in its object.
    (
        re.compile(
            r"(?P<pre>\b[A-Za-z_]*token(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?)[^\s\"'\\,}]{6,}",
            re.IGNORECASE,
        ),
        rf"\g<pre>{MASK}",
    ),
    # Interaction tokens wherever they stand: base64 of "interaction:" and more.
    (re.compile(r"aW50ZXJhY3Rpb246[A-Za-z0-9_=-]+"), MASK),
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()

#: Libraries whose DEBUG output is per frame, kept at INFO or above whatever LOG_LEVEL says.
_FRAME_LOGGERS: typing.Final = ("aiormq", "aio_pika")

#: Fields of what the current task is doing (copied into tasks it starts, as asyncio does).
_CONTEXT: contextvars.ContextVar[typing.Mapping[str, typing.Any]] = contextvars.ContextVar(
    "shardline_log_context", default=types.MappingProxyType({})
)


@contextlib.contextmanager
def context(**fields: typing.Any) -> typing.Iterator[None]:
    """Add ``fields`` to every line logged inside the block (and in tasks started there);
    a record's own ``extra`` wins over them. A field given as ``None`` is not added (an
    outer value of it stays). Names a log record already has are refused, as ``extra``
    refuses them. A long-lived task started inside keeps the context: start it with
    ``context=contextvars.Context()`` if it outlives what the block is about."""
    clashing = sorted(k for k in fields if k in _RESERVED or k.startswith("_"))
    if clashing:
        raise ValueError(f"log context fields clash with log record attributes: {clashing}")
    added = {key: value for key, value in fields.items() if value is not None}
    token = _CONTEXT.set({**_CONTEXT.get(), **added})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def register_secret(value: secret.Secret | str | None) -> None:
    """Mask this exact value in every log line from now on (ignored when short or empty)."""
    raw = value.reveal() if isinstance(value, secret.Secret) else value
    if raw and len(raw) >= 6:
        with _secrets_lock:
            _secrets.add(raw)


def redact(text: str) -> str:
    """Return ``text`` with every known secret and secret-shaped value masked."""
    for known in sorted(_secrets, key=len, reverse=True):
        if known in text:
            text = text.replace(known, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_RESERVED: typing.Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extra fields, exc; then redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, typing.Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _RESERVED and not key.startswith("_")
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        line = orjson.dumps(entry, default=str).decode()
        return redact(line)


class TextFormatter(logging.Formatter):
    """For a terminal: ``12:00:01 WARNING shardline.gateway message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        context = " ".join(
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _RESERVED and not key.startswith("_")
        )
        line = f"{when} {record.levelname:<7} {record.name} {record.getMessage()}"
        if context:
            line = f"{line}  {context}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return redact(line)


class _ContextFilter(logging.Filter):
    """Puts the process's fields and the current context on each record, under its own."""

    def __init__(self, fields: dict[str, typing.Any]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.__dict__
        for fields in (_CONTEXT.get(), self.fields):
            for key, value in fields.items():
                own.setdefault(key, value)
        return True


class _RedactingFilter(logging.Filter):
    """Guards handlers that other code adds with its own formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        return True


def configure(
    level: str = "INFO",
    *,
    fmt: str = "auto",
    stream: typing.TextIO | None = None,
    fields: dict[str, typing.Any] | None = None,
) -> logging.Handler:
    """Send every logger's records to ``stream`` (stderr), redacted: JSON lines (``json``, what
    containers want) or readable lines (``text``); ``auto`` picks text on a terminal.
    ``fields`` go on every line (the process's pool and role)."""
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if out.isatty() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    handler.addFilter(_ContextFilter(dict(fields or {})))
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # The broker client's DEBUG lines print every frame, whole message bodies included: at
    # LOG_LEVEL=DEBUG a busy gateway would spend its time formatting them (a 1 MB publish
    # took minutes in a test). Shardline's own DEBUG lines say what matters.
    for chatty in _FRAME_LOGGERS:
        named = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        logging.getLogger(chatty).setLevel(max(named, logging.INFO))
    return handler
