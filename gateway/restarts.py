"""Shard restarts an operator asked for (``shardline restart-shard``), checked before acting.

A request is signed with the admin key (``shared.admin``) for one shard of one shard layout,
and is good for ``shared.admin.RESTART_MAX_AGE`` seconds. The gateway holding the shard takes
it off Redis (once), and follows it only if it is newer than the last one it followed for
that shard: the same request written back (a replay) restarts nothing.
"""

from __future__ import annotations

import logging
import typing

from shared import admin, redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway import holder
    from shared import keys
    from shared.secret import Secret

__all__: typing.Sequence[str] = ("RestartRequests", "take_requested")

_LOGGER = logging.getLogger("shardline.gateway.restarts")


class RestartRequests:
    def __init__(self, admin_key: Secret | None, scope: str) -> None:
        self._admin_key = admin_key
        self._scope = scope
        #: Shard id -> when the last restart followed for it was signed.
        self._followed: dict[int, float] = {}

    def vouched_for(self, shard_id: int, shard_count: int, token: str | bytes) -> bool:
        """Whether to restart ``shard_id`` (of ``shard_count``) on this request; a refusal
        is logged with its reason."""
        try:
            body = admin.verify(
                self._admin_key,
                self._scope,
                token,
                admin.RESTART_SHARD,
                max_age=admin.RESTART_MAX_AGE,
            )
            if body.get("shard") != shard_id or body.get("shard_count") != shard_count:
                raise admin.ActionRefusedError("signed for another shard")  # noqa: TRY301
            at = float(body["at"])
            if at <= self._followed.get(shard_id, float("-inf")):
                raise admin.ActionRefusedError("already followed (a replay)")  # noqa: TRY301
        except admin.ActionRefusedError as exc:
            _LOGGER.warning(
                "restart request refused", extra={"shard": shard_id, "reason": str(exc)}
            )
            return False
        self._followed[shard_id] = at
        return True


async def take_requested(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    requests: RestartRequests,
    shards: holder.ShardHolder,
) -> list[int]:
    """Restart the held shards an operator asked for: the socket is closed with its session
    kept, and the shard RESUMEs. Returns the shards restarted."""
    key = redis_keys.restart_requests()
    held = set(shards.held)
    try:
        asked = await redis.hgetall(key)
        mine = {int(s): token for s, token in asked.items() if s.isdigit() and int(s) in held}
        # HDEL answers 1 to one gateway only: a shard is restarted once.
        taken = [s for s in mine if await redis.hdel(key, str(s))]
    except redis_client.REDIS_ERRORS as exc:
        _LOGGER.debug("restart requests not read", extra={"error": str(exc)})
        return []
    count = shards.group.shard_count
    taken = [s for s in taken if requests.vouched_for(s, count, mine[s])]
    for shard_id in taken:
        _LOGGER.info("restarting a shard on request", extra={"shard": shard_id})
        try:
            await shards.stop(shard_id)
        except Exception as exc:  # the request is taken: the start below must still run
            _LOGGER.warning(
                "shard did not stop cleanly; starting it anyway",
                extra={"shard": shard_id, "error": repr(exc)},
            )
        try:
            await shards.start(shard_id)
        except Exception as exc:
            _LOGGER.warning(
                "restarted shard did not come back",
                extra={"shard": shard_id, "error": repr(exc)},
            )
    return taken
