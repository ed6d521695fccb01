"""deploy/rabbitmq: the definitions file makes the users, on a real broker that loads it.

A private RabbitMQ node (SERVICES.md) boots with deploy/rabbitmq/rabbitmq.conf and a
definitions file written by deploy/rabbitmq/definitions.py, as the image would; then the app's
user runs every declaration shared/topology.py makes, and is refused anything else. The node
here is RabbitMQ 3.10 (Debian's), the image 3.13: definitions import and permission checks
work the same in both.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import typing
import urllib.request
import uuid

import aio_pika
import aiormq
import pytest
import yaml

from shared import topology
from tests import servers
from tests.deploy import exported

if typing.TYPE_CHECKING:
    import collections.abc

RABBITMQ: typing.Final = exported.DEPLOY / "rabbitmq"
SCRIPT: typing.Final = RABBITMQ / "definitions.py"
NAMESPACE: typing.Final = "shardline"  # what the stack sets; the node is ours alone


class Broker(typing.NamedTuple):
    node: DefinitionsNode
    admin_password: str
    app_password: str
    prometheus_port: int

    def url(self, user: str, password: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.node.port}/"

    @property
    def app_url(self) -> str:
        return self.url("shardline", self.app_password)


class DefinitionsNode(servers.PrivateRabbitMQ):
    """A private node configured by the repository's rabbitmq.conf, with the Prometheus
    plugin. It registers with the machine's epmd (no private epmd to clean up) and is
    stopped by its own PID."""

    def __init__(self, directory: pathlib.Path, definitions: pathlib.Path) -> None:
        super().__init__(directory)
        self.definitions = definitions
        self.prometheus_port = servers.free_port()

    def _env(self) -> dict[str, str]:
        env = super()._env()
        del env["ERL_EPMD_PORT"]
        return env

    def start(self) -> None:
        server = pathlib.Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        if not server.exists():
            pytest.fail("rabbitmq-server is not installed: apt-get install -y rabbitmq-server")
        ours = (RABBITMQ / "rabbitmq.conf").read_text()
        line = "load_definitions = /etc/rabbitmq/definitions/definitions.json"
        assert ours.count(line) == 1
        (self.directory / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
        (self.directory / "rabbitmq.conf").write_text(
            ours.replace(line, f"load_definitions = {self.definitions}")
            + f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            + f"prometheus.tcp.port = {self.prometheus_port}\n"
            + "prometheus.tcp.ip = 127.0.0.1\n"
        )
        subprocess.run([str(server), "-detached"], env=self._env(), check=True, capture_output=True)
        ctl = "/usr/lib/rabbitmq/bin/rabbitmqctl"
        waited = subprocess.run(
            [ctl, "-n", self.name, "wait", "--timeout", "90", str(self.pidfile)],
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if waited.returncode != 0:
            pytest.fail(f"private RabbitMQ did not start: {waited.stderr}; see {self.directory}")

    def ctl(self, *args: str) -> str:
        return subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.name, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def kill(self) -> None:
        pid = int(self.pidfile.read_text().strip())
        os.kill(pid, signal.SIGKILL)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return typing.cast("bytes", reply.read()).decode()


def write_definitions(path: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--output", str(path)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> collections.abc.Iterator[Broker]:
    directory = tmp_path_factory.mktemp("rabbitmq-definitions")
    admin_password, app_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    password_file = directory / "app_password"
    password_file.write_text(app_password + "\n")  # a secret file, with its newline
    written = write_definitions(
        directory / "definitions.json",
        {
            "RABBITMQ_ADMIN_PASSWORD": admin_password,
            "RABBITMQ_APP_PASSWORD_FILE": str(password_file),
        },
    )
    assert written.returncode == 0, written.stderr
    node = DefinitionsNode(directory, directory / "definitions.json")
    node.start()
    try:
        yield Broker(node, admin_password, app_password, node.prometheus_port)
    finally:
        node.kill()


# --- the generator ------------------------------------------------------------------------


def test_the_definitions_hold_hashes_never_passwords(tmp_path: pathlib.Path) -> None:
    result = write_definitions(
        tmp_path / "d.json",
        {"RABBITMQ_ADMIN_PASSWORD": "admin-secret", "RABBITMQ_APP_PASSWORD": "app-secret"},
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "d.json").read_text()
    assert "secret" not in text
    users = {user["name"]: user for user in json.loads(text)["users"]}
    assert users["admin"]["tags"] == ["administrator"]
    assert users["shardline"]["tags"] == []  # no management UI, no HTTP API
    assert oct((tmp_path / "d.json").stat().st_mode & 0o777) == "0o644"


def test_a_missing_password_stops_the_generator_with_its_name(tmp_path: pathlib.Path) -> None:
    result = write_definitions(tmp_path / "d.json", {"RABBITMQ_ADMIN_PASSWORD": "x"})
    assert result.returncode == 2
    assert "RABBITMQ_APP_PASSWORD (or RABBITMQ_APP_PASSWORD_FILE) is required" in result.stderr
    assert not (tmp_path / "d.json").exists()


# --- on a broker that loaded them ---------------------------------------------------------


async def test_the_broker_has_exactly_the_two_users_and_no_guest(broker: Broker) -> None:
    listed = {
        u["user"]: u["tags"]
        for u in json.loads(broker.node.ctl("list_users", "--formatter", "json"))
    }
    assert listed == {"admin": ["administrator"], "shardline": []}
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(broker.url("guest", "guest"))
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(broker.url("shardline", broker.admin_password))
    admin = await aio_pika.connect(broker.url("admin", broker.admin_password))
    await admin.close()


async def test_the_app_user_declares_and_uses_everything_topology_declares(broker: Broker) -> None:
    names = topology.Topology(NAMESPACE)
    gateway_id = f"gw-{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(broker.app_url)
    async with connection:
        channel = await connection.channel()
        events, interactions = await names.declare_worker_queues(
            channel, "main", "default", ["MESSAGE_CREATE", "INTERACTION_CREATE"]
        )
        await names.unbind_worker_events(channel, "main", "default", ["MESSAGE_CREATE"])
        await names.declare_worker_queues(channel, "main", "default", ["MESSAGE_CREATE"])
        reply = await names.declare_reply_queue(channel, "main", gateway_id)
        await names.bind_shard(reply, "main", 3)
        await names.unbind_shard(reply, "main", 3)
        await names.declare_service_queue(channel, "main", "twitch")
        process = await names.declare_process_queue(channel, "main", "proc-1")
        dead = await names.declare_dead_letter(channel)

        # A dispatch reaches its worker queue; a command's answer goes through the default
        # exchange to the asker's queue; a poison message is dead-lettered by the worker.
        exchange = await channel.get_exchange(names.events_exchange)
        await exchange.publish(aio_pika.Message(b"{}"), names.event_key("main", "MESSAGE_CREATE"))
        await channel.default_exchange.publish(aio_pika.Message(b"ok"), reply.name)
        dlx = await channel.get_exchange(names.dead_letter_exchange)
        await dlx.publish(aio_pika.Message(b"bad"), "")
        rpc = await channel.get_exchange(names.rpc_exchange)
        await rpc.publish(aio_pika.Message(b"?"), names.process_key("main", "proc-1"))
        for queue, body in ((events, b"{}"), (reply, b"ok"), (dead, b"bad"), (process, b"?")):
            message = await queue.get(timeout=5, fail=True)
            assert message is not None
            assert message.body == body
            await message.ack()
        await channel.declare_queue(names.dead_letter_queue, passive=True)
        assert interactions.name == names.interaction_queue("main", "default")


async def _bind_to_amq_topic(channel: aio_pika.abc.AbstractChannel) -> None:
    queue = await channel.declare_queue(f"{NAMESPACE}.deploy-test", auto_delete=True)
    await queue.bind("amq.topic", "#")


async def _publish_to_amq_topic(channel: aio_pika.abc.AbstractChannel) -> None:
    amq_topic = await channel.get_exchange("amq.topic")
    await amq_topic.publish(aio_pika.Message(b"x"), "anything")


Attempt = typing.Callable[[aio_pika.abc.AbstractChannel], typing.Awaitable[object]]
REFUSED: typing.Final[dict[str, Attempt]] = {
    "exchange outside the namespace": lambda channel: channel.declare_exchange(
        "other.events", aio_pika.ExchangeType.TOPIC
    ),
    "queue outside the namespace": lambda channel: channel.declare_queue("other.queue"),
    # amq.gen-...: the app names every queue it declares, so it may declare none of these.
    "server-named queue": lambda channel: channel.declare_queue(""),
    "a name that only starts like the namespace": lambda channel: channel.declare_queue(
        f"{NAMESPACE}x.events"
    ),
    "publish to amq.topic": _publish_to_amq_topic,
    "bind to amq.topic": _bind_to_amq_topic,
    "delete a queue outside the namespace": lambda channel: channel.queue_delete("other.q"),
}


@pytest.mark.parametrize("attempt", sorted(REFUSED))
async def test_the_app_user_is_refused_everything_else(broker: Broker, attempt: str) -> None:
    connection = await aio_pika.connect(broker.app_url)
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await REFUSED[attempt](channel)


async def test_the_admin_user_may_do_anything(broker: Broker) -> None:
    connection = await aio_pika.connect(broker.url("admin", broker.admin_password))
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("")
        await queue.bind("amq.topic", "#")
        await queue.delete()


async def test_the_scraped_endpoint_has_each_queue_and_every_broker_metric_we_query(
    broker: Broker,
) -> None:
    names = topology.Topology(NAMESPACE)
    connection = await aio_pika.connect(broker.app_url)
    async with connection:
        channel = await connection.channel()
        await names.declare_worker_queues(channel, "main", "default", ["MESSAGE_CREATE"])
    config = yaml.safe_load((exported.DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (queues,) = (s for s in config["scrape_configs"] if s["job_name"] == "rabbitmq-queues")
    query = "&".join(
        f"{key}={value}" for key, values in queues["params"].items() for value in values
    )
    base = f"http://127.0.0.1:{broker.prometheus_port}"
    queue = names.worker_queue("main", "default")
    ready = f'rabbitmq_detailed_queue_messages_ready{{vhost="/",queue="{queue}"}}'
    detailed = ""
    for _ in range(60):  # the broker emits queue statistics every 5 s
        detailed = await asyncio.to_thread(fetch, f"{base}{queues['metrics_path']}?{query}")
        if ready in detailed:
            break
        await asyncio.sleep(0.5)
    totals = await asyncio.to_thread(fetch, f"{base}/metrics")
    assert ready in detailed
    assert f'rabbitmq_detailed_queue_consumers{{vhost="/",queue="{queue}"}}' in detailed
    exposed = {
        line.split(" ")[2]
        for line in (detailed + totals).splitlines()
        if line.startswith("# TYPE ")
    }
    missing = exported.RABBITMQ - exposed
    assert not missing, f"the broker exports no {sorted(missing)}"
    # Per-object metrics stay off: /metrics has totals only, not one series per queue.
    assert queue not in totals
