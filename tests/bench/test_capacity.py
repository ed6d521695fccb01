"""The capacity bench's arithmetic: what it reads from Redis and /metrics, and per event."""

from __future__ import annotations

import pytest

from bench import capacity


def snapshot(
    at: float, redis: dict[str, tuple[int, int]], cpu: float, metrics: float = 0.0
) -> capacity.Snapshot:
    return capacity.Snapshot(
        at, {"gateway": cpu}, redis, {"shardline_gateway_published_messages": metrics}
    )


def test_commandstats_keeps_calls_and_usec_of_commands_only() -> None:
    info = {
        "cmdstat_hset": {"calls": 10, "usec": 25, "usec_per_call": 2.5},
        "cmdstat_evalsha": {"calls": 3, "usec": 90, "usec_per_call": 30.0},
        "errorstat_ERR": {"count": 1},
    }
    assert capacity.commandstats(info) == {"hset": (10, 25), "evalsha": (3, 90)}


def test_stats_delta_drops_commands_that_did_not_run() -> None:
    before = {"hset": (10, 25), "get": (5, 5)}
    after = {"hset": (30, 65), "get": (5, 5), "sadd": (4, 8)}
    assert capacity.stats_delta(before, after) == {"hset": (20, 40), "sadd": (4, 8)}


def test_prometheus_sums_every_sample_and_reads_counters_with_total() -> None:
    text = """# TYPE shardline_worker_events_handled counter
shardline_worker_events_handled_total{pool="main",event="A"} 3.0
shardline_worker_events_handled_total{pool="main",event="B"} 4.0
shardline_worker_events_handled_created{pool="main",event="B"} 1.7e9
shardline_worker_messages_consumed_total 9.0
"""
    assert capacity.prometheus(text, "shardline_worker_events_handled") == 7.0
    assert capacity.prometheus(text, "shardline_worker_messages_consumed") == 9.0
    assert capacity.prometheus(text, "shardline_gateway_events") == 0.0


def test_cost_is_per_event_with_the_idle_background_removed() -> None:
    # Idle: 2 s with 4 EVALSHA (lease renewals) and 0.02 CPU-s.
    idle = (snapshot(0.0, {"evalsha": (0, 0)}, 1.0), snapshot(2.0, {"evalsha": (4, 40)}, 1.02))
    # Measured: 4 s, 1,000 events: 2,000 HSET and 10 EVALSHA (8 of them the background).
    before = snapshot(10.0, {"evalsha": (4, 40), "hset": (0, 0)}, 2.0, metrics=100.0)
    after = snapshot(14.0, {"evalsha": (14, 140), "hset": (2000, 3000)}, 2.54, metrics=600.0)
    measured = capacity.cost(before, after, 1000, idle)
    assert measured.redis_calls == pytest.approx({"evalsha": 0.002, "hset": 2.0})
    assert measured.redis_total == pytest.approx(2.002)
    assert measured.redis_usec == pytest.approx((3000 + 100 - 80) / 1000)
    assert measured.cpu["gateway"] == pytest.approx((0.54 - 0.04) / 1000)
    assert measured.metrics["shardline_gateway_published_messages"] == pytest.approx(0.5)


def test_spread_is_the_median_and_the_range() -> None:
    assert capacity.spread([3.0, 1.0, 2.0], "{:.1f}") == "2.0 (1.0 to 3.0)"
    assert capacity.spread([1.5]) == "1.500"
