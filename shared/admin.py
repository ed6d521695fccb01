"""Operator actions, signed: a gateway drains, restarts a shard or follows a re-shard only when
the operator's key (``ADMIN_KEY``) vouches for it.

Every process of a pool reaches its Redis and RabbitMQ: workers, and the plugins they run, too.
An operator action written there is data, never code to run, and it carries an HMAC-SHA256 over
what it asks, the pool it is for and when it was asked. Whoever has the pool's Redis password
but not the admin key (a worker, a plugin, a leaked cache credential) can read actions but not
forge one, point one at another pool or gateway, or replay a stale restart. Only gateways and
the operator's ``shardline`` hold the key; workers never get it.

Wire form: ``base64url(payload) + "." + hex(hmac_sha256(key, payload))`` where the payload is
the JSON object ``{"action", "scope", "at", ...fields}`` with sorted keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import typing

import orjson

if typing.TYPE_CHECKING:
    from shared.secret import Secret

__all__: typing.Sequence[str] = (
    "DRAIN",
    "MIN_KEY_LENGTH",
    "RESHARD",
    "RESTART_MAX_AGE",
    "RESTART_SHARD",
    "ActionRefusedError",
    "sign",
    "verify",
)

DRAIN: typing.Final = "drain"
RESTART_SHARD: typing.Final = "restart-shard"
RESHARD: typing.Final = "reshard"

#: Characters an ``ADMIN_KEY`` needs at least (``openssl rand -hex 32`` gives 64).
MIN_KEY_LENGTH: typing.Final = 32
#: Seconds a restart request stays good: an older one is stale or replayed.
RESTART_MAX_AGE: typing.Final = 60.0
#: Seconds a signature's clock may run ahead of the verifier's.
CLOCK_SKEW: typing.Final = 30.0
#: Longest token read at all; a real one is a few hundred bytes.
_MAX_TOKEN: typing.Final = 4096

Field = str | int


class ActionRefusedError(Exception):
    """An operator action that is not vouched for; the message says why (never the key)."""


def _mac(key: Secret, payload: bytes) -> str:
    return hmac.new(key.reveal().encode(), payload, hashlib.sha256).hexdigest()


def sign(key: Secret, scope: str, action: str, *, at: float | None = None, **fields: Field) -> str:
    """A token for ``action`` in ``scope`` (a pool's key prefix) with its ``fields``."""
    body = {**fields, "action": action, "scope": scope, "at": time.time() if at is None else at}
    payload = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return f"{base64.urlsafe_b64encode(payload).decode()}.{_mac(key, payload)}"


def verify(
    key: Secret | None,
    scope: str,
    token: str | bytes | None,
    action: str,
    *,
    max_age: float | None = None,
    now: float | None = None,
) -> dict[str, typing.Any]:
    """The payload of a good token for ``action`` in ``scope``; :class:`ActionRefusedError` if
    there is no key here, or the token is missing, malformed, forged, for something else or
    (with ``max_age``) too old."""
    if not key:
        raise ActionRefusedError("ADMIN_KEY is not set on this process")
    if token is None:
        raise ActionRefusedError("not signed")
    text = token.decode(errors="replace") if isinstance(token, bytes) else token
    if len(text) > _MAX_TOKEN or text.count(".") != 1:
        raise ActionRefusedError("not a signed action")
    encoded, mac = text.split(".")
    try:
        payload = base64.b64decode(encoded.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ActionRefusedError("not a signed action") from None
    if not hmac.compare_digest(mac.encode(), _mac(key, payload).encode()):
        raise ActionRefusedError("bad signature (signed with another ADMIN_KEY, or altered)")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ActionRefusedError("not a signed action") from None
    if not isinstance(body, dict) or body.get("action") != action:
        raise ActionRefusedError(f"signed for another action, not {action}")
    if body.get("scope") != scope:
        raise ActionRefusedError("signed for another pool")
    at = body.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise ActionRefusedError("no time of signing")
    current = time.time() if now is None else now
    if at > current + CLOCK_SKEW:
        raise ActionRefusedError("signed in the future (check the clocks)")
    if max_age is not None and current - at > max_age:
        raise ActionRefusedError(f"older than {max_age:.0f} s (stale or replayed)")
    return body
