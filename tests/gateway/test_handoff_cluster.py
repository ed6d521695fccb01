"""Gateways sharing and handing over shards (leases, sessions, RESUME) on a real Redis
Cluster (``tests/cluster.py``)."""

from __future__ import annotations

from tests.cluster import every_test, redis_client, redis_url
from tests.gateway import test_assignment, test_cold_start, test_handoff

__all__ = ["redis_client", "redis_url"]

for module in (test_handoff, test_assignment, test_cold_start):
    globals().update(every_test(module, frozenset({"stack"})))
