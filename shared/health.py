"""The health and metrics endpoint every Shardline process serves.

``GET /livez`` (liveness: the process and its event loop run, and it is doing its job or
visibly on its way there; what a container health check and Swarm's restarts read),
``GET /readyz`` (readiness: it does its whole job now; 200 or 503 with the reason, for
Prometheus and people) and ``GET /metrics`` (Prometheus text format, or OpenMetrics when the
scraper asks for it).

The two checks differ on purpose: a gateway identifying 64 shards at one IDENTIFY per 5 s is
live for five minutes before it is ready, and a health check on readiness would replace it
in the middle of doing exactly what it should.
"""

from __future__ import annotations

import typing

import prometheus_client
from aiohttp import web
from prometheus_client import exposition, registry

__all__: typing.Sequence[str] = ("HealthServer", "metrics_registry")

#: A check: ``None`` when healthy, else the reason (shown in the 503's body).
Check = typing.Callable[[], str | None]


def metrics_registry(collector: registry.Collector) -> prometheus_client.CollectorRegistry:
    """The registry a process serves: its own collector, plus the process's memory, CPU and
    file descriptors, Python's version and its garbage collector."""
    found = prometheus_client.CollectorRegistry(auto_describe=False)
    prometheus_client.ProcessCollector(registry=found)
    prometheus_client.PlatformCollector(registry=found)
    prometheus_client.GCCollector(registry=found)
    found.register(collector)
    return found


def _always_alive() -> str | None:
    return None


class HealthServer:
    def __init__(
        self,
        port: int,
        *,
        ready: Check,
        metrics: prometheus_client.CollectorRegistry,
        alive: Check = _always_alive,
        host: str = "0.0.0.0",  # noqa: S104 - probed from outside the container
    ) -> None:
        self.port = port
        self.host = host
        self._ready = ready
        self._alive = alive
        self._registry = metrics
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_handler)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - the bound port (for port 0) is only here
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _livez(self, _: web.Request) -> web.Response:
        # Answered on the process's own event loop: a blocked loop fails the probe's timeout.
        return _answer(self._alive(), "ok")

    async def _readyz(self, _: web.Request) -> web.Response:
        return _answer(self._ready(), "ready")

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        return render(self._registry, request.headers.get("Accept"))


def _answer(problem: str | None, good: str) -> web.Response:
    if problem is None:
        return web.Response(text=f"{good}\n")
    return web.Response(status=503, text=f"not {good}: {problem}\n")


def render(found: prometheus_client.CollectorRegistry, accept: str | None) -> web.Response:
    """The registry in the format the scraper asked for (Prometheus negotiates OpenMetrics)."""
    encoder, content_type = exposition.choose_encoder(accept or "")
    return web.Response(body=encoder(found), headers={"Content-Type": content_type})
