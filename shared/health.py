"""The health and metrics endpoint every Shardline process serves.

``GET /livez`` (the process runs), ``GET /readyz`` (it does its job: 200 or 503 with the
reason) and ``GET /metrics`` (Prometheus text format). Used by Docker's HEALTHCHECK and by
Prometheus.
"""

from __future__ import annotations

import typing

from aiohttp import web

__all__: typing.Sequence[str] = ("HealthServer", "MetricsText")


class MetricsText:
    """Builds Prometheus text exposition, one family at a time."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: typing.Iterable[tuple[dict[str, str], float]],
    ) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                self._lines.append(f"{name}{{{rendered}}} {_number(value)}")
            else:
                self._lines.append(f"{name} {_number(value)}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value != value:  # noqa: PLR0124 - NaN
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class HealthServer:
    def __init__(
        self,
        port: int,
        *,
        ready: typing.Callable[[], str | None],
        metrics: typing.Callable[[], str],
        host: str = "0.0.0.0",  # noqa: S104 - probed from outside the container
    ) -> None:
        self.port = port
        self.host = host
        self._ready = ready
        self._metrics = metrics
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
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        problem = self._ready()
        if problem is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {problem}\n")

    async def _metrics_handler(self, _: web.Request) -> web.Response:
        return web.Response(text=self._metrics(), content_type="text/plain", charset="utf-8")
