"""``test_layout``'s Redis tests again, on a real Redis Cluster (``tests/cluster.py``)."""

from __future__ import annotations

from tests.cluster import every_test, redis_client, redis_url
from tests.shared.cache import test_layout

__all__ = ["redis_client", "redis_url"]

# The snapshot script reads keys of several slots (the member and user buckets, the
# unavailable set, messages), which a cluster refuses: its tests stay standalone.
globals().update(
    {name: test for name, test in every_test(test_layout).items() if "snapshot" not in name}
)
