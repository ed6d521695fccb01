"""Shard restarts an operator asked for (``shardline restart-shard``), checked before acting.

A request is signed with the admin key (``shared.admin``) for one shard of one shard layout,
and is good for ``shared.admin.RESTART_MAX_AGE`` seconds. The gateway holding the shard takes
it off Redis (once), and follows it only if it is newer than the last one it followed for
that shard: the same request written back (a replay) restarts nothing.
"""

from __future__ import annotations

import logging
import typing

from shared import admin

if typing.TYPE_CHECKING:
    from shared.secret import Secret

__all__: typing.Sequence[str] = ("RestartRequests",)

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
