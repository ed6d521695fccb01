"""The worker's Prometheus metrics."""

from __future__ import annotations

import typing

from shared import health
from worker import consumer as consumer_module

if typing.TYPE_CHECKING:
    from worker import app


def _histogram(
    text: health.MetricsText,
    name: str,
    help_text: str,
    series: dict[str, consumer_module.Histogram],
    label: str,
) -> None:
    samples: list[tuple[dict[str, str], float]] = []
    for key, histogram in sorted(series.items()):
        cumulative = 0
        for bound, count in zip(
            [*consumer_module.BUCKETS, float("inf")], histogram.counts, strict=True
        ):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            samples.append(({label: key, "le": le} if label else {"le": le}, cumulative))
    text.family(f"{name}_bucket", "histogram", help_text, samples)
    text.family(
        f"{name}_sum",
        "counter",
        help_text,
        [(({label: k} if label else {}), h.total) for k, h in sorted(series.items())],
    )
    text.family(
        f"{name}_count",
        "counter",
        help_text,
        [(({label: k} if label else {}), h.count) for k, h in sorted(series.items())],
    )


def render(worker: app.WorkerApp) -> str:
    text = health.MetricsText()
    stats = (
        worker.consumer.stats if worker.consumer is not None else consumer_module.ConsumerStats()
    )
    labels = {"pool": worker.settings.core.pool, "group": worker.settings.group}
    text.family(
        "shardline_worker_messages_consumed_total",
        "counter",
        "broker messages taken",
        [(labels, stats.consumed)],
    )
    text.family(
        "shardline_worker_events_handled_total",
        "counter",
        "events handled, by type",
        [({**labels, "event": t}, n) for t, n in sorted(stats.handled.items())],
    )
    text.family(
        "shardline_worker_handler_failures_total",
        "counter",
        "handler exceptions, by type",
        [({**labels, "event": t}, n) for t, n in sorted(stats.failures.items())],
    )
    text.family(
        "shardline_worker_duplicates_skipped_total",
        "counter",
        "replayed events not handled again",
        [(labels, stats.duplicates)],
    )
    text.family(
        "shardline_worker_dead_lettered_total",
        "counter",
        "unreadable messages parked with a reason",
        [(labels, stats.dead_lettered)],
    )
    _histogram(text, "shardline_worker_handler_seconds", "handler latency", stats.latency, "event")
    _histogram(
        text,
        "shardline_worker_event_age_seconds",
        "age of an event when handling starts",
        {"all": stats.age},
        "",
    )
    _services(text, worker, labels)
    return text.render()


def _services(text: health.MetricsText, worker: app.WorkerApp, labels: dict[str, str]) -> None:
    host = worker.service_host
    leading = [] if host is None else [(s.name, s.name in host.leading) for s in host.services]
    text.family(
        "shardline_worker_service_leader",
        "gauge",
        "1 for each service this replica leads",
        [({**labels, "service": name}, int(led)) for name, led in leading],
    )
    text.family(
        "shardline_worker_schedule_runs_total",
        "counter",
        "scheduled runs this replica did",
        [(labels, worker.scheduler.runs if worker.scheduler is not None else 0)],
    )
    cpu = worker.bot.cpu.stats
    text.family(
        "shardline_worker_cpu_calls_total", "counter", "CPU-pool calls", [(labels, cpu.calls)]
    )
    text.family(
        "shardline_worker_cpu_timeouts_total",
        "counter",
        "CPU-pool calls killed at their timeout",
        [(labels, cpu.timeouts)],
    )
    text.family(
        "shardline_worker_cpu_waiting",
        "gauge",
        "CPU-pool calls waiting for a process",
        [(labels, cpu.waiting)],
    )
