"""Which gateways of a pool an operator is draining: signed requests, checked by every gateway.

``shardline drain GATEWAY`` writes a request signed with the admin key (``shared.admin``) to
``drain_requests``; ``undrain`` removes it. Every gateway checks every request itself, so
that the drained gateway and its peers agree on who takes shards: if the drained one let go
of its shards while a peer still counted it in the fair share, those shards would sit unheld.
A drained gateway also names itself in the ``draining`` set, for peers that cannot check
signatures (a misconfigured key): believing a drain that is not followed only makes a peer
want more shards than it can get, never makes it let go of one.
"""

from __future__ import annotations

import logging
import typing

from shared import admin

if typing.TYPE_CHECKING:
    from shared.secret import Secret

__all__: typing.Sequence[str] = ("DrainRequests",)

_LOGGER = logging.getLogger("shardline.gateway.drains")


class DrainRequests:
    """One gateway's reading of the pool's drain requests."""

    def __init__(self, admin_key: Secret | None, scope: str, gateway_id: str) -> None:
        self._admin_key = admin_key
        self._scope = scope
        self._gateway_id = gateway_id
        #: Gateway id -> when the drain followed now was signed.
        self._following: dict[str, float] = {}
        #: Gateway id -> when the last drain seen taken back was signed: that one, or an
        #: older one written back (a replay), is refused.
        self._taken_back: dict[str, float] = {}
        self._refused: dict[str, str] = {}

    def vouched_for(
        self, requests: typing.Mapping[str, str], live: typing.Collection[str]
    ) -> set[str]:
        """The gateways whose drain request the admin key vouches for."""
        drained = set()
        for gateway, token in requests.items():
            try:
                at = self._check(gateway, token)
            except admin.ActionRefusedError as exc:
                self._log_refusal(gateway, token, str(exc))
                continue
            self._following[gateway] = at
            drained.add(gateway)
        for gateway in set(self._following) - drained:
            self._taken_back[gateway] = self._following.pop(gateway)
        # Gateway ids are random per process: forget those that are gone.
        for gateway in set(self._taken_back) - set(live) - set(requests):
            del self._taken_back[gateway]
        for gateway in set(self._refused) - set(requests):
            del self._refused[gateway]
        return drained

    def _check(self, gateway: str, token: str) -> float:
        body = admin.verify(self._admin_key, self._scope, token, admin.DRAIN)
        if body.get("gateway") != gateway:
            raise admin.ActionRefusedError("signed for another gateway")
        at = float(body["at"])
        if at <= self._taken_back.get(gateway, float("-inf")):
            raise admin.ActionRefusedError("not newer than an undrain already seen (a replay)")
        return at

    def _log_refusal(self, gateway: str, token: str, reason: str) -> None:
        if self._refused.get(gateway) == token:
            return  # one line per request, not one per heartbeat
        self._refused[gateway] = token
        ours = gateway == self._gateway_id
        _LOGGER.log(
            logging.WARNING if ours else logging.DEBUG,
            "drain request refused",
            extra={"gateway": gateway, "reason": reason},
        )
