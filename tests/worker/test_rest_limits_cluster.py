"""``test_rest_limits``'s tests again, on a real Redis Cluster (``tests/cluster.py``)."""

from __future__ import annotations

from tests.cluster import every_test, redis_client, redis_url
from tests.worker import test_rest_limits

__all__ = ["redis_client", "redis_url"]

globals().update(every_test(test_rest_limits))
