"""The image's contents without a Docker engine: the Dockerfile's build stage done by hand.

The wheel is built from exactly what the Dockerfile copies, installed apart from the source
tree, and each service's entry point is started from it; the HEALTHCHECK command is run as
written against a live and a dead health port. What this cannot show (no engine here): the
base image, the user switch and the layers themselves.
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import threading
import typing

import pytest

ROOT: typing.Final = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE: typing.Final = (ROOT / "Dockerfile").read_text()


def copied_by_the_build_stage() -> list[str]:
    """The source paths the build stage COPYs (up to its RUN pip wheel)."""
    build = DOCKERFILE.split("RUN pip wheel", 1)[0]
    paths: list[str] = []
    for line in build.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            paths += shlex.split(line)[1:-1]
    return paths


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The project installed from its wheel into a directory of its own (dependencies are
    the test environment's, installed from requirements/dev.lock, whose pins are the image's
    runtime.lock's: tests/requirements checks they agree)."""
    base = tmp_path_factory.mktemp("image")
    source = base / "src"
    source.mkdir()
    for name in copied_by_the_build_stage():
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / name)
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(  # as the Dockerfile does (with the locked setuptools, no isolated build)
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), "."],
        cwd=source,
        check=True,
        timeout=300,
    )
    [wheel] = wheels.glob("shardline-*.whl")
    site = base / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300
    )
    return site


def run(site: pathlib.Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` importing the project from ``site`` only, from a directory without it."""
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_URL", "TOKEN", "_KEY"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=site.parent,
        env={**clean, "PYTHONPATH": str(site), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_build_stage_copies_every_package_the_project_ships() -> None:
    packages = re.search(r"include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text())
    assert packages is not None
    shipped = {name.strip('" *') for name in packages.group(1).split(",")}
    assert shipped <= set(copied_by_the_build_stage())


def test_the_wheel_holds_every_module_and_the_playground_page(installed: pathlib.Path) -> None:
    where = run(
        installed,
        "-c",
        "import cli.__main__, gateway.app, worker.app, playground.web.server as s, shared;"
        "print(shared.__file__); print(*sorted(p.name for p in s._STATIC.iterdir()))",
    )
    assert where.returncode == 0, where.stderr
    origin, static = where.stdout.splitlines()
    assert origin.startswith(str(installed)), "imported from the source tree, not the wheel"
    assert static.split() == ["app.js", "index.html", "style.css"]


@pytest.mark.parametrize("service", ["gateway", "worker"])
def test_each_service_starts_from_the_wheel_and_names_what_it_misses(
    installed: pathlib.Path, service: str
) -> None:
    started = run(installed, "-m", service, LOG_FORMAT="text")
    assert started.returncode != 0
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr  # one line naming the variable, no traceback
    assert "DISCORD_TOKEN" in lines[0]


def test_the_operator_cli_runs_from_the_wheel(installed: pathlib.Path) -> None:
    shown = run(installed, "-m", "cli", "--help")
    assert shown.returncode == 0, shown.stderr
    for command in ("status", "drain", "restart-shard", "dead-letters", "reshard"):
        assert command in shown.stdout


def healthcheck() -> list[str]:
    found = re.search(r"HEALTHCHECK [^\n]*\\\n\s*CMD (\[[^\n]*\])", DOCKERFILE)
    assert found is not None
    command: list[str] = json.loads(found.group(1))
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def test_the_healthcheck_command_passes_on_a_live_port_and_fails_on_a_dead_one() -> None:
    class Livez(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/livez" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Livez)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        env = {**os.environ, "HEALTH_PORT": str(port)}
        live = subprocess.run(healthcheck(), env=env, timeout=30, check=False)
        assert live.returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    dead = subprocess.run(healthcheck(), env=env, capture_output=True, timeout=30, check=False)
    assert dead.returncode != 0
