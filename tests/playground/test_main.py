"""``python -m playground`` as a real process: its private servers, its one-line failures, and a
clean start each run."""

from __future__ import annotations

import os
import pathlib
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
import urllib.request

import orjson
import pytest
import redis

from playground.discord import gateway as discord_gateway
from playground.servers import free_port
from shared import keys

#: Variables that would make the playground use given servers or a given namespace.
SERVER_VARIABLES: typing.Final = ("AMQP_URL", "REDIS_URL", "MONGO_URL", "NAMESPACE")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    env.pop("DISCORD_TOKEN", None)
    return {**env, "LOG_LEVEL": "INFO", **extra}


class PlaygroundRun:
    """One ``python -m playground --port 0 --gateways 1 --workers 1``: its stdout lines, its
    page, and its stop."""

    def __init__(self, env: dict[str, str], log: pathlib.Path, *args: str) -> None:
        self._log = log.open("wb")
        command = [sys.executable, "-m", "playground", "--gateways", "1", "--workers", "1"]
        command += ["--log-dir", str(log.with_suffix(".d")), *args]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            # Printed once the servers answer (a private RabbitMQ takes about 5 s).
            self.url = self.wait_line(r"open (http://\S+?)/\s*$", 120).group(1)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.decode(errors="replace"))

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line like {pattern!r} in: {''.join(self.seen)}")

    def state(self) -> dict[str, typing.Any]:
        with urllib.request.urlopen(f"{self.url}/playground/api/state", timeout=5) as response:
            state: dict[str, typing.Any] = orjson.loads(response.read())
            return state

    def wait_serving(self, timeout: float = 90.0) -> dict[str, typing.Any]:
        """Both shards connected through the platform's gateway, both processes running."""
        deadline = time.monotonic() + timeout
        state: dict[str, typing.Any] = {}
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the playground exited"
            try:
                state = self.state()
            except OSError:
                time.sleep(0.3)
                continue
            connected = [s for s in state["shards"] if s["connected"]]
            running = [p for p in state["processes"] or [] if p["state"] == "running"]
            if len(connected) == 2 and len(running) == 2:
                return state
            time.sleep(0.3)
        raise AssertionError(f"the platform did not come up: {state.get('panel')}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the playground then stops its processes and servers itself) and wait; also
        after a failed assertion, since a SIGKILL would orphan its gateways and workers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self._log.close()


def processes_in(directory: pathlib.Path) -> set[int]:
    """Live processes whose working directory or environment lies in ``directory``."""
    found = set()
    needle = str(directory).encode()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = str((entry / "cwd").readlink()).encode()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if cwd.startswith(needle) or needle in environ:
            found.add(int(entry.name))
    return found


def running(pids: set[int], grace: float = 5.0) -> set[int]:
    """Those of ``pids`` still running after ``grace`` seconds (a zombie that init has yet to
    reap runs nothing)."""
    deadline = time.monotonic() + grace
    while True:
        left = set()
        for pid in pids:
            try:
                stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if stat.rpartition(")")[2].split()[0] != "Z":
                left.add(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def run_failing(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "playground", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(180)
def test_private_servers_are_started_and_removed(tmp_path: pathlib.Path) -> None:
    run = PlaygroundRun(base_env(), tmp_path / "playground.log", "--port", "0")
    try:
        found = run.wait_line(r"private .* in (\S+) \(removed on exit\)", 10)
        directory = pathlib.Path(found.group(1))
        assert all(name in found.group(0) for name in ("Redis", "RabbitMQ", "MongoDB"))
        run.wait_serving()
        servers = processes_in(directory)
        # redis-server, mongod, RabbitMQ's node and its own epmd at least.
        assert len(servers) >= 4, servers
        assert run.stop() == 0
    finally:
        run.stop()
    assert not directory.exists()
    assert not running(processes_in(directory))
    assert not running(servers)


def test_a_busy_port_is_one_line(tmp_path: pathlib.Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_failing(["--port", str(port), "--log-dir", str(tmp_path)], base_env())
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0]
    assert "--port" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not list(tmp_path.iterdir())  # nothing was started


def test_a_missing_server_names_it_and_its_install_command(tmp_path: pathlib.Path) -> None:
    # A PATH with Redis and epmd but no rabbitmq-server.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("redis-server", "epmd"):
        found = shutil.which(program)
        assert found is not None, f"{program} is needed for this test"
        (bin_dir / program).symlink_to(found)
    result = run_failing(["--port", "0"], base_env(PATH=str(bin_dir)))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "rabbitmq-server is not installed" in lines[0]
    assert "apt-get install -y rabbitmq-server" in lines[0]
    assert "redis-server" not in lines[0].replace("rabbitmq-server", "")
    assert "AMQP_URL" in lines[0]
    assert "Traceback" not in result.stderr


def resumes(state: dict[str, typing.Any]) -> list[str]:
    return [entry["text"] for entry in state["panel"] if entry["kind"] == "resume"]


def identifies(state: dict[str, typing.Any]) -> list[str]:
    return [entry["text"] for entry in state["panel"] if entry["kind"] == "identify"]


@pytest.mark.timeout(240)
def test_each_run_starts_clean_against_given_servers(
    amqp_url: str, redis_url: str, mongo_url: str, tmp_path: pathlib.Path
) -> None:
    """Two runs in a row against the same servers: the second identifies anew, never resuming
    what the first stored; the first's namespace is gone from Redis once it stopped."""
    env = base_env(AMQP_URL=amqp_url, REDIS_URL=redis_url, MONGO_URL=mongo_url)
    client = redis.Redis.from_url(redis_url)
    namespaces = []
    try:
        for attempt in range(2):
            run = PlaygroundRun(env, tmp_path / f"run{attempt}.log", "--port", "0")
            try:
                namespace = run.wait_line(r"NAMESPACE=(\S+)", 30).group(1)
                state = run.wait_serving()
                assert not resumes(state), state["panel"]
                assert len([t for t in identifies(state) if "accepted" in t]) == 2
                assert client.keys(f"{namespace}:*")
                assert run.stop() == 0
            finally:
                run.stop()
            assert not client.keys(f"{namespace}:*")
            namespaces.append(namespace)
    finally:
        client.close()
    assert namespaces[0] != namespaces[1]


@pytest.mark.timeout(180)
def test_a_given_namespace_is_cleared_at_start(
    amqp_url: str, redis_url: str, mongo_url: str, tmp_path: pathlib.Path, namespace: str
) -> None:
    """Sessions an earlier run left under ``NAMESPACE`` (one that was killed, say) are removed
    before the gateways start: without that the page shows ``RESUME shard None: refused``."""
    port = free_port()
    client = redis.Redis.from_url(redis_url)
    stale = keys.RedisKeys(namespace, "main")
    try:
        for shard in range(2):
            client.hset(
                stale.session(shard, 2),
                mapping={
                    "session_id": f"from-an-earlier-run-{shard}",
                    "seq": 7,
                    "resume_url": discord_gateway.resume_url(f"127.0.0.1:{port}"),
                    "shard_count": 2,
                },
            )
        env = base_env(
            AMQP_URL=amqp_url, REDIS_URL=redis_url, MONGO_URL=mongo_url, NAMESPACE=namespace
        )
        run = PlaygroundRun(env, tmp_path / "run.log", "--port", str(port))
        try:
            assert run.wait_line(r"NAMESPACE=(\S+)", 30).group(1) == namespace
            state = run.wait_serving()
            assert not resumes(state), state["panel"]
            assert len([t for t in identifies(state) if "accepted" in t]) == 2
            assert run.stop() == 0
        finally:
            run.stop()
        assert not client.keys(f"{namespace}:*")
    finally:
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()
