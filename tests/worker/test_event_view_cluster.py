"""What an event's synchronous cache helpers answer, read from a real Redis Cluster (the
snapshot's pipelines instead of its one-server script; ``tests/cluster.py``)."""

from __future__ import annotations

from tests.cluster import every_test, redis_client, redis_url
from tests.worker import test_event_view

__all__ = ["redis_client", "redis_url"]

globals().update(every_test(test_event_view, frozenset({"redis_client", "setup"})))
