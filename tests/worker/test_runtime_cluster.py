"""The gateway -> worker flow again, every process on a real Redis Cluster: gateways (leases,
sessions, identify, the cache, interests) and workers (dedupe, the cache, cooldowns, the REST
limiter, prompts) against the Discord emulator (``tests/cluster.py``)."""

from __future__ import annotations

from tests.cluster import redis_client, redis_url, rename
from tests.worker import test_runtime

__all__ = ["redis_client", "redis_url"]

globals().update(
    rename(
        test_runtime,
        "test_an_injected_message_reaches_a_typed_listener_and_the_reply_reaches_discord",
        "test_a_resume_replay_is_not_handled_twice",
        "test_an_interaction_behind_a_backlog_is_deferred_within_three_seconds",
        "test_a_worker_killed_mid_handler_leaves_the_event_to_another_replica",
        "test_a_worker_fills_the_cache_with_a_large_guilds_members_through_op_8",
        "test_listeners_read_settings_a_write_on_another_replica_just_changed",
    )
)
