"""Gateways sharing and handing over shards (leases, sessions, RESUME) on a real Redis
Cluster (``tests/cluster.py``)."""

from __future__ import annotations

from tests.cluster import every_test, redis_client, redis_url
from tests.gateway import test_assignment, test_handoff

__all__ = ["redis_client", "redis_url"]

# (test_cold_start is not repeated here: it takes 64 identify windows, 320 s, to test the
# identify pacing and health checks, not Redis.)
for module in (test_handoff, test_assignment):
    globals().update(every_test(module, frozenset({"stack"})))
