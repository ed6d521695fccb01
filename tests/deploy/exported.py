"""What the dashboards and alerts may query: the metric names the processes export, and the
RabbitMQ plugin's and Prometheus's own. A name outside these is a typo or a metric that went
away, and the panel or alert would silently show nothing."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import typing

import pytest

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
DEPLOY: typing.Final = ROOT / "deploy"

#: prometheus_client's process, platform and GC collectors, in every process.
PROCESS: typing.Final = frozenset(
    {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections_total",
    }
)
#: Every process's broker connection (shared.amqp.BrokerCollector).
BROKER: typing.Final = frozenset({"shardline_broker_failovers_total", "shardline_broker_node"})
GATEWAY: typing.Final = (
    frozenset(
        {
            "shardline_gateway_shard_connected",
            "shardline_gateway_shard_queued",
            "shardline_gateway_shard_latency_seconds",
            "shardline_gateway_events_total",
            "shardline_gateway_identifies_total",
            "shardline_gateway_resumes_total",
            "shardline_gateway_publish_backlog",
            "shardline_gateway_published_events_total",
            "shardline_gateway_published_messages_total",
            "shardline_gateway_skipped_events_total",
            "shardline_gateway_publish_failures_total",
            "shardline_gateway_oversize_events_total",
            "shardline_gateway_cache_writes_total",
            "shardline_gateway_cache_failures_total",
            "shardline_gateway_redis_up",
            "shardline_gateway_breaker_state",
            "shardline_gateway_cache_repair_pending",
            "shardline_gateway_commands_total",
            "shardline_gateway_session_start_remaining",
            "shardline_gateway_session_start_limit",
            "shardline_gateway_session_start_reset_seconds",
            "shardline_gateway_shards_held",
        }
    )
    | BROKER
)
WORKER: typing.Final = (
    frozenset(
        {
            "shardline_worker_messages_consumed_total",
            "shardline_worker_events_handled_total",
            "shardline_worker_handler_failures_total",
            "shardline_worker_duplicates_skipped_total",
            "shardline_worker_dedupe_held_total",
            "shardline_worker_interactions_expired_total",
            "shardline_worker_interactions_answered_elsewhere_total",
            "shardline_worker_dedupe_hold_expired_total",
            "shardline_worker_dead_lettered_total",
            "shardline_worker_retries_total",
            "shardline_worker_event_cache_reads_failed_total",
            "shardline_worker_claim_reads_failed_total",
            "shardline_worker_handler_seconds_bucket",
            "shardline_worker_handler_seconds_sum",
            "shardline_worker_handler_seconds_count",
            "shardline_worker_event_age_seconds_bucket",
            "shardline_worker_event_age_seconds_sum",
            "shardline_worker_event_age_seconds_count",
            "shardline_worker_service_leader",
            "shardline_worker_schedule_runs_total",
            "shardline_worker_cpu_calls_total",
            "shardline_worker_cpu_timeouts_total",
            "shardline_worker_cpu_waiting",
            "shardline_worker_rest_rate_limited_total",
            "shardline_worker_rest_waits_total",
            "shardline_worker_rest_invalid_requests_total",
            "shardline_worker_rest_limiter_fallbacks_total",
            "shardline_worker_rest_limiter_shared",
            "shardline_worker_breaker_state",
            "shardline_worker_queue_messages",
            "shardline_worker_queue_consumers",
            "shardline_worker_dead_letter_messages",
        }
    )
    | BROKER
)
#: rabbitmq_prometheus (checked against a real node in test_rabbitmq.py).
RABBITMQ: typing.Final = frozenset(
    {
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_connections",
        "rabbitmq_channels",
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_resident_memory_limit_bytes",
        "rabbitmq_detailed_queue_messages_ready",
        "rabbitmq_detailed_queue_consumers",
    }
)
#: Prometheus's own per-target series.
SCRAPE: typing.Final = frozenset({"up"})
KNOWN: typing.Final = PROCESS | GATEWAY | WORKER | RABBITMQ | SCRAPE

_FUNCTIONS: typing.Final = frozenset(
    {
        "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "rate",
        "increase", "irate", "delta", "deriv", "histogram_quantile", "time", "absent",
        "label_values", "offset", "unless", "or", "and", "bool", "group_left", "group_right",
        "humanize", "humanizeDuration", "topk", "bottomk", "clamp_min", "clamp_max",
    }
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (what is neither a function, a keyword, a label,
    a label value nor a duration)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_strings)
    without_matchers = re.sub(r"\{[^}]*\}", "", without_groupings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_matchers)
    without_durations = re.sub(r"\boffset\s+\w+", "", without_ranges)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", without_durations))
    return {name for name in names if name not in _FUNCTIONS and not name.startswith("$")}


def promtool(*args: str | pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Run promtool (Prometheus's own checker); its absence fails the test, never skips it."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool is not installed: apt-get install -y prometheus (it ships promtool)",
            pytrace=False,
        )
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )
