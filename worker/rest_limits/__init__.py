"""Discord REST rate limits shared by every replica of a pool, under hikari's REST client.

hikari's ``RESTClientImpl`` asks a bucket manager for permission before each request and tells
it what the response said. :class:`SharedBucketManager` answers from Redis, so twenty replicas
sharing a token behave as one client:

* **one round trip per request**: a script reserves the request's slot in its route bucket
  (learned from ``X-RateLimit-Bucket/Limit/Remaining/Reset-After``, per major parameter) and
  in the global limit (paced evenly at 95% of ``REST_GLOBAL_LIMIT``: Discord counts it in
  fixed one-second windows, and the 5% absorbs network jitter), and returns how long to wait;
* **the first request of an unknown bucket** goes alone (a short lock), so a burst from many
  replicas cannot overrun a limit nobody has learned yet;
* **429s are shared**: a global one pauses every replica for ``retry_after``; a route one
  empties the bucket for everyone until it resets;
* **the invalid-request budget** (401, 403 and non-shared 429: 10,000 per 10 minutes, then
  Cloudflare bans the IP) is counted; past half of it the global pace halves, past 80% only
  interaction responses go out until the window slides;
* **interaction responses and follow-ups** (and any request without the bot's token) are
  exempt from the global limit, as Discord documents.

Redis unavailable: hikari's own in-process limiter takes over (learning from the responses
from then on) and a warning says so once; nothing fails because of the limiter.

With ``REST_LIMITER=off`` (an external REST proxy such as nirn-proxy at ``DISCORD_API_URL``
does the limiting) no limiter runs in the process at all.

Time is injected (:class:`shared.clock.Clock`, the real one by default): the limiter reads
``now`` and waits only through it, and the Redis state decides by comparing that ``now`` with
absolute times stored in its keys, never by Redis's key expiry (see
:mod:`worker.rest_limits.limit_state`). Tests run it on a fake clock.

The package: :mod:`~worker.rest_limits.limit_state` (the Lua scripts and the keys they keep),
:mod:`~worker.rest_limits.shared_buckets` (the bucket manager: waits, 429s, fallback) and
:mod:`~worker.rest_limits.client` (the REST client glue).
"""

from __future__ import annotations

import typing

from worker.rest_limits.client import (
    DisabledBucketManager,
    LimitedRESTClient,
    build_client,
    check_compatibility,
)
from worker.rest_limits.limit_state import INVALID_BUDGET, INVALID_WINDOW_MS, MARGIN_MS
from worker.rest_limits.shared_buckets import GLOBAL_PACE, SharedBucketManager

__all__: typing.Sequence[str] = (
    "GLOBAL_PACE",
    "INVALID_BUDGET",
    "INVALID_WINDOW_MS",
    "MARGIN_MS",
    "DisabledBucketManager",
    "LimitedRESTClient",
    "SharedBucketManager",
    "build_client",
    "check_compatibility",
)
