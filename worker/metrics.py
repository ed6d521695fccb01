"""The worker's Prometheus metrics: read from its parts at scrape time, never counted twice."""

from __future__ import annotations

import typing

from prometheus_client import core, registry

from worker import consumer as consumer_module
from worker import event_view

if typing.TYPE_CHECKING:
    import collections.abc

    from worker import app


class WorkerCollector(registry.Collector):
    """One scrape of a worker replica: events, handlers, REST limits, queues, services."""

    def __init__(self, worker: app.WorkerApp) -> None:
        self._worker = worker

    def collect(self) -> collections.abc.Iterator[core.Metric]:
        worker = self._worker
        consumer = worker.consumer
        stats = consumer.stats if consumer is not None else consumer_module.ConsumerStats()
        base = ["pool", "group"]
        labels = [worker.settings.core.pool, worker.settings.group]

        def one(
            family: core.CounterMetricFamily | core.GaugeMetricFamily, value: float
        ) -> core.Metric:
            family.add_metric(labels, value)
            return family

        def by(
            family: core.CounterMetricFamily | core.GaugeMetricFamily,
            values: collections.abc.Iterable[tuple[str, float]],
        ) -> core.Metric:
            for key, value in sorted(values):
                family.add_metric([*labels, key], value)
            return family

        counter = core.CounterMetricFamily
        yield one(
            counter("shardline_worker_messages_consumed", "broker messages taken", labels=base),
            stats.consumed,
        )
        yield by(
            counter(
                "shardline_worker_events_handled", "events handled, by type",
                labels=[*base, "event"],
            ),
            stats.handled.items(),
        )  # fmt: skip
        yield by(
            counter(
                "shardline_worker_handler_failures", "handler exceptions, by type",
                labels=[*base, "event"],
            ),
            stats.failures.items(),
        )  # fmt: skip
        yield one(
            counter(
                "shardline_worker_duplicates_skipped", "replayed events not handled again",
                labels=base,
            ),
            stats.duplicates,
        )  # fmt: skip
        yield one(
            counter(
                "shardline_worker_interactions_expired",
                "interactions Discord no longer knew when their handler answered (over 3 s): "
                "settled, not retried",
                labels=base,
            ),
            stats.expired_interactions,
        )  # fmt: skip
        yield one(
            counter(
                "shardline_worker_interactions_answered_elsewhere",
                "interactions Discord had already taken an answer for (a replay another "
                "replica answered while Redis was away): settled, not retried",
                labels=base,
            ),
            stats.interactions_answered_elsewhere,
        )  # fmt: skip
        dedupe = worker.deduplicator
        yield one(
            counter(
                "shardline_worker_dedupe_held",
                "redelivered or replayed messages held for Redis while it was away",
                labels=base,
            ),
            dedupe.held if dedupe is not None else 0,
        )  # fmt: skip
        yield one(
            counter(
                "shardline_worker_dedupe_hold_expired",
                "held messages handled on this replica's memory alone: Redis stayed away for "
                "the whole hold, so they may have run on another replica too",
                labels=base,
            ),
            dedupe.hold_expired if dedupe is not None else 0,
        )  # fmt: skip
        yield one(
            counter(
                "shardline_worker_dead_lettered",
                "messages parked on the dead-letter queue with a reason",
                labels=base,
            ),
            stats.dead_lettered,
        )  # fmt: skip
        yield one(
            counter(
                "shardline_worker_retries",
                "messages sent to a retry queue (delayed redelivery) after a handler failed",
                labels=base,
            ),
            stats.retried,
        )  # fmt: skip
        yield one(
            counter(
                "shardline_worker_event_cache_reads_failed",
                "reads for hikari's event helpers that failed: their events' helpers answered "
                "None (Redis down or past its deadline)",
                labels=base,
            ),
            event_view.STATS.failures,
        )  # fmt: skip
        yield one(
            counter(
                "shardline_worker_claim_reads_failed",
                "dedupe claims whose cache read failed inside the claim's script: the claims "
                "stood and their events were read on their own",
                labels=base,
            ),
            dedupe.reads_failed if dedupe is not None else 0,
        )  # fmt: skip
        yield _histogram(
            "shardline_worker_handler_seconds", "handler latency", [*base, "event"],
            {(*labels, event): h for event, h in stats.latency.items()},
        )  # fmt: skip
        yield _histogram(
            "shardline_worker_event_age_seconds",
            "age of an event when handling starts (from the gateway's receipt): consumer lag",
            base, {tuple(labels): stats.age},
        )  # fmt: skip
        yield from self._rest(base, labels)
        breakers = core.GaugeMetricFamily(
            "shardline_worker_breaker_state",
            "circuit breaker in front of a dependency: 0 closed, 1 half-open, 2 open",
            labels=[*base, "breaker"],
        )
        for name, breaker in sorted(worker.breakers.items()):
            breakers.add_metric([*labels, name], breaker.state.level)
        yield breakers
        yield from self._queues(base, labels)
        yield from self._services(base, labels)

    def _rest(self, base: list[str], labels: list[str]) -> collections.abc.Iterator[core.Metric]:
        limiter = self._worker.shared_limiter
        if limiter is None:  # REST_LIMITER=off: a proxy limits, nothing here counts
            return
        counts = limiter.stats
        family = core.CounterMetricFamily(
            "shardline_worker_rest_rate_limited",
            "429s Discord returned, by scope (the shared limiter should keep this at 0)",
            labels=[*base, "scope"],
        )
        family.add_metric([*labels, "global"], counts["global_429"])
        family.add_metric([*labels, "route"], counts["route_429"])
        yield family
        family = core.CounterMetricFamily(
            "shardline_worker_rest_waits",
            "requests that waited: for a bucket's slot, past their expected wake-up, or for "
            "Discord's invalid-request block",
            labels=[*base, "reason"],
        )
        family.add_metric([*labels, "bucket"], counts["waits"])
        family.add_metric([*labels, "late"], counts["late"])
        family.add_metric([*labels, "blocked"], counts["blocked"])
        yield family
        for name, key, help_text in (
            ("rest_invalid_requests", "invalid", "401, 403 and 429 answers (Discord's budget)"),
            ("rest_limiter_fallbacks", "fallbacks", "limiter calls Redis could not answer"),
        ):
            family = core.CounterMetricFamily(f"shardline_worker_{name}", help_text, labels=base)
            family.add_metric(labels, counts[key])
            yield family
        shared = core.GaugeMetricFamily(
            "shardline_worker_rest_limiter_shared",
            "1 while REST limits are shared through Redis; 0 while the breaker is open and "
            "this replica limits alone",
            labels=base,
        )
        shared.add_metric(labels, float(limiter.shared))
        yield shared

    def _queues(self, base: list[str], labels: list[str]) -> collections.abc.Iterator[core.Metric]:
        worker = self._worker
        depths = worker.queue_depths
        if depths is None:
            return
        dead_letter = worker.topology.dead_letter_queue
        messages = core.GaugeMetricFamily(
            "shardline_worker_queue_messages", "messages ready in the group's queues",
            labels=[*base, "queue"],
        )  # fmt: skip
        consumers = core.GaugeMetricFamily(
            "shardline_worker_queue_consumers", "consumers of the group's queues",
            labels=[*base, "queue"],
        )  # fmt: skip
        dead = core.GaugeMetricFamily(
            "shardline_worker_dead_letter_messages",
            "messages on the dead-letter queue (every replica reads the same queue)",
            labels=base,
        )
        for name, depth in sorted(depths.depths.items()):
            if name == dead_letter:
                dead.add_metric(labels, depth.messages)
            else:
                messages.add_metric([*labels, name], depth.messages)
                consumers.add_metric([*labels, name], depth.consumers)
        yield messages
        yield consumers
        yield dead

    def _services(
        self, base: list[str], labels: list[str]
    ) -> collections.abc.Iterator[core.Metric]:
        worker = self._worker
        host = worker.service_host
        family = core.GaugeMetricFamily(
            "shardline_worker_service_leader", "1 for each service this replica leads",
            labels=[*base, "service"],
        )  # fmt: skip
        leading = host.leading if host is not None else set()
        for service in host.services if host is not None else ():
            family.add_metric([*labels, service.name], int(service.name in leading))
        yield family
        cpu = worker.bot.cpu.stats
        runs = worker.scheduler.runs if worker.scheduler is not None else 0
        for kind, name, help_text, value in (
            ("counter", "schedule_runs", "scheduled runs this replica did", runs),
            ("counter", "cpu_calls", "CPU-pool calls", cpu.calls),
            ("counter", "cpu_timeouts", "CPU-pool calls killed at their timeout", cpu.timeouts),
            ("gauge", "cpu_waiting", "CPU-pool calls waiting for a process", cpu.waiting),
        ):
            kind_of = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
            family_of = kind_of(f"shardline_worker_{name}", help_text, labels=base)
            family_of.add_metric(labels, value)
            yield family_of


def _histogram(
    name: str,
    help_text: str,
    label_names: list[str],
    series: dict[tuple[str, ...], consumer_module.Histogram],
) -> core.HistogramMetricFamily:
    family = core.HistogramMetricFamily(name, help_text, labels=label_names)
    bounds = [*(repr(bound) for bound in consumer_module.BUCKETS), "+Inf"]
    for key, histogram in sorted(series.items()):
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(bounds, histogram.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(list(key), buckets, histogram.total)
    return family
