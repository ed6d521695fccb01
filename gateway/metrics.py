"""The gateway's Prometheus metrics."""

from __future__ import annotations

import typing

from shared import health

if typing.TYPE_CHECKING:
    from gateway import app, shards


def render(gateway: app.GatewayApp) -> str:
    text = health.MetricsText()
    pool = gateway.settings.core.pool
    group = gateway.group
    publisher = gateway.publisher
    stats = group.stats if group is not None else {}

    def per_shard(value: typing.Callable[[int], float]) -> list[tuple[dict[str, str], float]]:
        return [({"pool": pool, "shard": str(s)}, value(s)) for s in sorted(stats)]

    text.family(
        "shardline_gateway_shard_connected", "gauge", "1 when the shard's session is live",
        per_shard(lambda s: float(stats[s].connected)),
    )  # fmt: skip
    if group is not None:
        text.family(
            "shardline_gateway_shard_latency_seconds", "gauge", "heartbeat round trip",
            per_shard(lambda s: shard_latency(group, s)),
        )  # fmt: skip
    text.family(
        "shardline_gateway_events_total", "counter", "dispatches received",
        per_shard(lambda s: stats[s].events),
    )  # fmt: skip
    text.family(
        "shardline_gateway_identifies_total", "counter", "sessions started (READY)",
        per_shard(lambda s: stats[s].identifies),
    )  # fmt: skip
    text.family(
        "shardline_gateway_resumes_total", "counter", "sessions resumed (RESUMED)",
        per_shard(lambda s: stats[s].resumes),
    )  # fmt: skip
    if publisher is not None:
        labels = {"pool": pool}
        text.family(
            "shardline_gateway_publish_backlog", "gauge", "events awaiting a broker confirm",
            [(labels, publisher.buffered)],
        )  # fmt: skip
        for name, value, help_text in (
            ("published_events_total", publisher.stats.published_events, "events confirmed"),
            ("published_messages_total", publisher.stats.published_messages, "broker messages"),
            ("skipped_events_total", publisher.stats.skipped_events, "no worker listens"),
            ("publish_failures_total", publisher.stats.publish_failures, "publish attempts failed"),
            ("cache_writes_total", publisher.stats.cache_writes, "dispatches written to the cache"),
            ("cache_failures_total", publisher.stats.cache_failures, "cache writes lost to Redis"),
        ):
            text.family(f"shardline_gateway_{name}", "counter", help_text, [(labels, value)])
    text.family(
        "shardline_gateway_redis_up", "gauge", "0 while Redis cannot be written",
        [({"pool": pool}, float(gateway.redis_up))],
    )  # fmt: skip
    if gateway.commands is not None:
        text.family(
            "shardline_gateway_commands_total", "counter", "gateway commands from workers",
            [
                ({"pool": pool, "result": "sent"}, gateway.commands.handled),
                ({"pool": pool, "result": "refused"}, gateway.commands.rejected),
            ],
        )  # fmt: skip
    return text.render()


def shard_latency(group: shards.ShardGroup, shard_id: int) -> float:
    shard = group.shard(shard_id)
    return shard.heartbeat_latency if shard is not None else float("nan")
