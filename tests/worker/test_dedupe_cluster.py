"""The deduplicator's tests again, on a real Redis Cluster (``tests/cluster.py``)."""

from __future__ import annotations

from tests.cluster import redis_client, redis_url, rename
from tests.worker import test_dedupe

__all__ = ["redis_client", "redis_url"]

globals().update(
    rename(
        test_dedupe,
        "test_a_second_copy_is_skipped_while_the_first_is_processing_and_after_it_is_done",
        "test_a_redelivery_takes_over_a_dead_holders_claim_but_a_fresh_copy_does_not",
        "test_messages_arriving_together_share_one_call_and_carry_pending_done_marks",
        "test_large_sequence_numbers_make_the_same_keys_as_python",
        "test_a_redelivered_copy_waits_for_a_live_holder_and_is_skipped_once_it_is_done",
        "test_a_redelivered_copy_of_this_workers_own_claim_waits_for_it_too",
        "test_the_claims_of_a_holder_that_died_are_taken_over_once_its_key_expires",
    )
)
