"""The gateway's Prometheus metrics: read from its parts at scrape time, never counted twice."""

from __future__ import annotations

import typing

from prometheus_client import core, registry

if typing.TYPE_CHECKING:
    import collections.abc

    from gateway import app


class GatewayCollector(registry.Collector):
    """One scrape of a gateway: per-shard state, publishing, the cache, session starts."""

    def __init__(self, gateway: app.GatewayApp) -> None:
        self._gateway = gateway

    def collect(self) -> collections.abc.Iterator[core.Metric]:
        gateway = self._gateway
        pool = gateway.settings.core.pool
        group = gateway.group
        stats = group.stats if group is not None else {}
        shard_ids = sorted(stats)

        def per_shard(
            family: core.GaugeMetricFamily | core.CounterMetricFamily,
            value: typing.Callable[[int], float],
        ) -> core.Metric:
            for shard_id in shard_ids:
                family.add_metric([pool, str(shard_id)], value(shard_id))
            return family

        by_shard = ["pool", "shard"]
        yield _gauge("shardline_gateway_shards_held", "shards this gateway holds", pool, len(stats))
        yield per_shard(
            core.GaugeMetricFamily(
                "shardline_gateway_shard_connected", "1 when the shard's session is live",
                labels=by_shard,
            ),
            lambda s: float(stats[s].connected),
        )  # fmt: skip
        yield per_shard(
            core.GaugeMetricFamily(
                "shardline_gateway_shard_queued",
                "1 while the shard waits its turn to IDENTIFY (the pool's bucket, the session "
                "start budget): not connected, and not stuck",
                labels=by_shard,
            ),
            lambda s: float(stats[s].queued),
        )
        if group is not None:
            yield per_shard(
                core.GaugeMetricFamily(
                    "shardline_gateway_shard_latency_seconds", "heartbeat round trip",
                    labels=by_shard,
                ),
                lambda s: _or_nan(group.latency(s)),
            )  # fmt: skip
        for name, help_text, value in (
            ("events", "dispatches received", lambda s: stats[s].events),
            ("identifies", "sessions started (READY)", lambda s: stats[s].identifies),
            ("resumes", "sessions resumed (RESUMED)", lambda s: stats[s].resumes),
        ):
            yield per_shard(
                core.CounterMetricFamily(f"shardline_gateway_{name}", help_text, labels=by_shard),
                value,
            )
        yield from self._publishing(pool)
        yield from self._session_starts(pool)

    def _publishing(self, pool: str) -> collections.abc.Iterator[core.Metric]:
        gateway = self._gateway
        publisher = gateway.publisher
        if publisher is not None:
            yield _gauge(
                "shardline_gateway_publish_backlog", "events awaiting a broker confirm",
                pool, publisher.buffered,
            )  # fmt: skip
            published = publisher.stats
            for name, value, help_text in (
                ("published_events", published.published_events, "events confirmed"),
                ("published_messages", published.published_messages, "broker messages"),
                ("skipped_events", published.skipped_events, "no worker listens"),
                ("publish_failures", published.publish_failures, "publish attempts failed"),
                (
                    "oversize_events",
                    published.oversize_events,
                    "events too large for a worker: dead-lettered without payload, not retried",
                ),
                ("cache_writes", published.cache_writes, "dispatches written to the cache"),
                ("cache_failures", published.cache_failures, "cache writes lost to Redis"),
            ):
                yield _counter(f"shardline_gateway_{name}", help_text, pool, value)
        yield _gauge(
            "shardline_gateway_redis_up", "0 while Redis cannot be written",
            pool, float(gateway.redis_up),
        )  # fmt: skip
        breakers = core.GaugeMetricFamily(
            "shardline_gateway_breaker_state",
            "circuit breaker in front of a dependency: 0 closed, 1 half-open, 2 open",
            labels=["pool", "breaker"],
        )
        for name, breaker in sorted(gateway.breakers.items()):
            breakers.add_metric([pool, name], breaker.state.level)
        yield breakers
        if gateway.repair is not None:
            yield _gauge(
                "shardline_gateway_cache_repair_pending",
                "guilds whose cache writes an outage skipped, waiting to be re-fetched",
                pool, len(gateway.repair.pending),
            )  # fmt: skip
        if gateway.commands is not None:
            family = core.CounterMetricFamily(
                "shardline_gateway_commands", "gateway commands from workers",
                labels=["pool", "result"],
            )  # fmt: skip
            family.add_metric([pool, "sent"], gateway.commands.handled)
            family.add_metric([pool, "refused"], gateway.commands.rejected)
            yield family

    def _session_starts(self, pool: str) -> collections.abc.Iterator[core.Metric]:
        ledger = self._gateway.ledger
        budget = ledger.budget() if ledger is not None else None
        if budget is None:  # not known yet: no sample rather than a made-up one
            return
        yield _gauge(
            "shardline_gateway_session_start_limit",
            "session starts Discord allows per window (GET /gateway/bot's total)",
            pool, budget.total,
        )  # fmt: skip
        yield _gauge(
            "shardline_gateway_session_start_remaining",
            "session starts left in this window, as this gateway last knew",
            pool, budget.remaining,
        )  # fmt: skip
        yield _gauge(
            "shardline_gateway_session_start_reset_seconds",
            "seconds until Discord resets the session start budget",
            pool, budget.reset_after,
        )  # fmt: skip


def _gauge(name: str, help_text: str, pool: str, value: float) -> core.GaugeMetricFamily:
    family = core.GaugeMetricFamily(name, help_text, labels=["pool"])
    family.add_metric([pool], value)
    return family


def _counter(name: str, help_text: str, pool: str, value: float) -> core.CounterMetricFamily:
    family = core.CounterMetricFamily(name, help_text, labels=["pool"])
    family.add_metric([pool], value)
    return family


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
