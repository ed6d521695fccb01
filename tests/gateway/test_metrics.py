"""Liveness, readiness and Prometheus metrics of a running gateway."""

from __future__ import annotations

import typing

import aiohttp

from tests import exposition
from tests.deploy import exported
from tests.exposition import value

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack


async def test_health_and_metrics(stack: Stack) -> None:
    discord = stack.discord
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    sink = await stack.listen(["MESSAGE_CREATE"])
    async with (
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway,
        aiohttp.ClientSession() as http,
    ):
        assert gateway.health is not None
        base = f"http://127.0.0.1:{gateway.health.port}"
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        async with http.get(f"{base}/livez") as response:
            assert response.status == 200
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200
        discord.send_message(channel_id, discord.add_user("u"), "hi")
        await discord.wait_for(lambda: sink.of("MESSAGE_CREATE"))
        publisher = gateway.publisher
        assert publisher is not None
        # Its confirm may come after the sink's copy: the metrics are read once it has.
        await discord.wait_for(lambda: publisher.stats.published_events == 1, what="the confirm")
        samples = await exposition.scrape(http, f"{base}/metrics")
        shard = {"pool": "main", "shard": "0"}
        assert value(samples, "shardline_gateway_shard_connected", **shard) == 1
        assert value(samples, "shardline_gateway_identifies_total", **shard) == 1
        assert value(samples, "shardline_gateway_resumes_total", **shard) == 0
        assert value(samples, "shardline_gateway_shards_held", pool="main") == 1
        assert value(samples, "shardline_gateway_published_events_total", pool="main") == 1
        assert value(samples, "shardline_gateway_publish_backlog", pool="main") == 0
        assert value(samples, "shardline_gateway_redis_up", pool="main") == 1
        # The session start budget as GET /gateway/bot said it, less this gateway's IDENTIFY.
        said = discord.gateway.options
        assert value(samples, "shardline_gateway_session_start_limit", pool="main") == (
            said.session_start_total
        )
        assert value(samples, "shardline_gateway_session_start_remaining", pool="main") == (
            said.session_start_total - 1
        )
        reset = value(samples, "shardline_gateway_session_start_reset_seconds", pool="main")
        assert 0 < reset <= 86_400
        assert discord.token not in gateway.render_metrics()
        # Exactly what the dashboards and alerts are checked against (tests/deploy).
        assert {n for n, _ in samples if n.startswith("shardline_")} == exported.GATEWAY
        assert {n for n, _ in samples} >= exported.PROCESS
        # Not ready while a shard reconnects; the request must land inside hikari's 1-2 s
        # backoff, which a loaded machine may miss: another close, a few times at most.
        for _ in range(5):
            discord.force_close(0, 4000)
            await discord.wait_for(lambda: gateway.readiness() is not None, timeout=5)
            async with http.get(f"{base}/readyz") as response:
                status, said = response.status, await response.text()
            await discord.wait_for(lambda: gateway.readiness() is None, timeout=10, what="resumed")
            if status == 503:
                break
        assert status == 503
        assert "shards not connected: [0]" in said
