"""The health and metrics endpoint every process serves: liveness and readiness answers,
and /metrics in the format the scraper asks for (``shared.health``)."""

from __future__ import annotations

import typing

import aiohttp
import prometheus_client
import pytest
from prometheus_client import core, registry

from shared import health
from tests import exposition

if typing.TYPE_CHECKING:
    import collections.abc


class EventsCollector(registry.Collector):
    """A process's own collector: one counter, read at scrape time."""

    def __init__(self) -> None:
        self.events = 0

    def collect(self) -> collections.abc.Iterator[core.Metric]:
        family = core.CounterMetricFamily(
            "shardline_test_events", "Events handled.", labels=["pool"]
        )
        family.add_metric(["main"], self.events)
        yield family


class Checks:
    """What the process says of itself; a test changes it between requests."""

    def __init__(self) -> None:
        self.alive: str | None = None
        self.ready: str | None = "identifying 3 of 8 shards"


@pytest.fixture
async def served() -> collections.abc.AsyncIterator[tuple[str, Checks, EventsCollector]]:
    checks, collector = Checks(), EventsCollector()
    server = health.HealthServer(
        0,
        ready=lambda: checks.ready,
        alive=lambda: checks.alive,
        metrics=health.metrics_registry(collector),
        host="127.0.0.1",
    )
    await server.start()
    assert server.port != 0, "the bound port of port 0 is known after start()"
    yield f"http://127.0.0.1:{server.port}", checks, collector
    await server.close()


async def answer(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def test_live_and_ready_are_separate_answers(
    served: tuple[str, Checks, EventsCollector],
) -> None:
    base, checks, _ = served
    # Live while it works towards ready: a health check on /livez must not restart it.
    assert await answer(f"{base}/livez") == (200, "ok\n")
    assert await answer(f"{base}/readyz") == (503, "not ready: identifying 3 of 8 shards\n")
    checks.ready = None
    assert await answer(f"{base}/readyz") == (200, "ready\n")
    checks.alive = "shards made no progress for 120 s"
    assert await answer(f"{base}/livez") == (503, "not ok: shards made no progress for 120 s\n")
    assert (await answer(f"{base}/readyz"))[0] == 200, "each check answers for itself"


async def test_liveness_defaults_to_alive() -> None:
    server = health.HealthServer(
        0, ready=lambda: "never", metrics=prometheus_client.CollectorRegistry(), host="127.0.0.1"
    )
    await server.start()
    try:
        assert await answer(f"http://127.0.0.1:{server.port}/livez") == (200, "ok\n")
    finally:
        await server.close()


async def test_metrics_negotiate_text_or_openmetrics(
    served: tuple[str, Checks, EventsCollector],
) -> None:
    base, _, collector = served
    collector.events = 3
    async with aiohttp.ClientSession() as http:
        # Both formats valid and saying the same (promtool on the text page).
        samples = await exposition.scrape(http, f"{base}/metrics")
        assert exposition.value(samples, "shardline_test_events_total", pool="main") == 3
        assert any(name == "python_info" for name, _ in samples), "the platform collector"
        async with http.get(f"{base}/metrics") as response:
            plain = await response.text()
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        async with http.get(
            f"{base}/metrics", headers={"Accept": exposition.OPENMETRICS}
        ) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            open_text = await response.text()
    assert not plain.rstrip().endswith("# EOF")
    assert open_text.rstrip().endswith("# EOF"), "an OpenMetrics page ends with # EOF"
    assert 'shardline_test_events_total{pool="main"} 3.0' in open_text


async def test_metrics_are_read_at_scrape_time(
    served: tuple[str, Checks, EventsCollector],
) -> None:
    base, _, collector = served
    collector.events = 1
    _, first = await answer(f"{base}/metrics")
    collector.events = 5
    _, second = await answer(f"{base}/metrics")
    assert 'shardline_test_events_total{pool="main"} 1.0' in first
    assert 'shardline_test_events_total{pool="main"} 5.0' in second


def test_the_registry_adds_the_process_figures_and_samples_lists_them() -> None:
    collector = EventsCollector()
    collector.events = 2
    served = health.metrics_registry(collector)
    found = {
        (sample.name, tuple(sample.labels.items())): sample.value
        for family in served.collect()
        for sample in family.samples
    }
    assert found["shardline_test_events_total", (("pool", "main"),)] == 2
    names = {name for name, _ in found}
    assert "process_resident_memory_bytes" in names
    assert "python_gc_collections_total" in names
    assert "python_info" in names


async def test_close_stops_answering_and_may_be_called_twice() -> None:
    server = health.HealthServer(
        0, ready=lambda: None, metrics=prometheus_client.CollectorRegistry(), host="127.0.0.1"
    )
    await server.start()
    url = f"http://127.0.0.1:{server.port}/livez"
    await server.close()
    await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await answer(url)
