"""``test_identify_queue``'s tests again, on a real Redis Cluster (``tests/cluster.py``)."""

from __future__ import annotations

from tests.cluster import every_test, redis_client, redis_url
from tests.gateway import test_identify_queue

__all__ = ["redis_client", "redis_url"]

globals().update(every_test(test_identify_queue))
