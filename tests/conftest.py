"""Fixtures for the real servers, isolated per test by unique name prefixes."""

from __future__ import annotations

import logging
import typing
import uuid

import aio_pika
import hypothesis
import pytest
import redis.asyncio as aioredis

from playground.discord import emulator, gateway
from playground.lavalink import emulator as lavalink_emulator
from playground.web import server as playground_server
from shared import config, topology
from tests import servers

if typing.TYPE_CHECKING:
    import pathlib


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        return servers.ensure_redis()
    except servers.ServiceUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> typing.Iterator[servers.PrivateRedisCluster]:
    """A private Redis Cluster (three masters, three replicas), started on first use."""
    cluster = servers.PrivateRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        servers.wait_old_enough(cluster.ports[0])  # started together: all as old
    except servers.ServiceUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_sentinel(tmp_path: pathlib.Path) -> typing.Iterator[servers.PrivateRedisSentinel]:
    """A private master, replica and three sentinels (a test may kill the master)."""
    sentinel = servers.PrivateRedisSentinel(tmp_path)
    try:
        sentinel.start()
    except servers.ServiceUnavailableError as exc:
        sentinel.stop()
        pytest.fail(str(exc), pytrace=False)
    yield sentinel
    sentinel.stop()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    try:
        return servers.ensure_rabbitmq()
    except servers.ServiceUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[str]:
    directory: pathlib.Path = tmp_path_factory.mktemp("mongod")
    server = servers.MongoServer(directory)
    try:
        server.start()
    except servers.ServiceUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server.url
    server.stop()


@pytest.fixture
def namespace() -> str:
    """A unique prefix for every broker name and Redis key of one test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_client(redis_url: str, namespace: str) -> typing.AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{namespace}:*", count=5000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)
    await client.aclose()


@pytest.fixture
async def amqp_connection(
    amqp_url: str, namespace: str
) -> typing.AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(amqp_url, timeout=15)
    yield connection
    await cleanup_broker(connection, namespace)
    await connection.close()


#: Services the tests define (their durable queues are removed after each test).
TEST_SERVICES: typing.Final = ("counter", "echo")


#: Every retry delay a test (or a worker's default) declares a retry queue for: removed after.
RETRY_DELAYS_USED: typing.Final = (*config.DEFAULT_RETRY_DELAYS, 0.05, 0.1, 0.3, 0.6, 0.9)


async def cleanup_broker(connection: aio_pika.abc.AbstractConnection, namespace: str) -> None:
    """Delete every exchange and queue of the namespace that a test may have declared."""
    names = topology.Topology(namespace)
    exchanges, queues = names.all_static_names()
    for pool in ("main", "premium", "beta"):
        for group in ("default", "a", "b"):
            for work in (names.worker_queue(pool, group), names.interaction_queue(pool, group)):
                queues.append(work)
                queues += [names.retry_queue(work, d) for d in RETRY_DELAYS_USED]
        queues += [names.service_queue(pool, service) for service in TEST_SERVICES]
    channel = await connection.channel()
    for queue in queues:
        await channel.queue_delete(queue)
    for exchange in exchanges:
        await channel.exchange_delete(exchange)
    await channel.close()


EmulatorFactory = typing.Callable[..., typing.Awaitable[emulator.DiscordEmulator]]


@pytest.fixture
async def make_emulator() -> typing.AsyncIterator[EmulatorFactory]:
    """Start Discord emulators with the given gateway options (and ``rate_limits``)."""
    started: list[emulator.DiscordEmulator] = []

    async def make(**options: typing.Any) -> emulator.DiscordEmulator:
        rate_limits = options.pop("rate_limits", None)
        instance = emulator.DiscordEmulator(
            gateway_options=gateway.GatewayOptions(**options), rate_limits=rate_limits
        )
        await instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.close()


@pytest.fixture
async def discord(make_emulator: EmulatorFactory) -> emulator.DiscordEmulator:
    return await make_emulator()


@pytest.fixture
async def lavalink() -> typing.AsyncIterator[lavalink_emulator.LavalinkEmulator]:
    """A Lavalink v4 node emulator (playerUpdate every 0.5 s, so tests see positions move)."""
    node = lavalink_emulator.LavalinkEmulator(player_update_interval=0.5)
    await node.start()
    yield node
    await node.close()


# Fuzzing on a shared 2-core machine: no per-example deadline, no complaint that generating
# examples is slow; the number of examples stays each test's own.
hypothesis.settings.register_profile(
    "shardline", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("shardline")


@pytest.fixture
async def playground() -> typing.AsyncIterator[playground_server.Playground]:
    """The playground's emulators and page on a free port, running no processes."""
    local = playground_server.Playground(playground_server.PlaygroundOptions(port=0))
    await local.start()
    yield local
    await local.close()


@pytest.fixture
def root_logging() -> typing.Iterator[None]:
    """For tests that call ``shared.logging.configure``: the root logger's handlers (pytest's
    capture among them) and levels as they were afterwards. A DEBUG handler left behind once
    made a later test format every broker frame, 1 MB bodies included, for two minutes."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("aiormq", "aio_pika")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, was in chatty.items():
        logging.getLogger(name).setLevel(was)


@pytest.fixture(scope="session")
def rabbitmq_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> typing.Iterator[servers.RabbitMQCluster]:
    """Three private RabbitMQ nodes in one cluster, started on first use (about 20 s) and
    shared by the session: a test that kills a node starts it again before it ends."""
    cluster = servers.RabbitMQCluster(tmp_path_factory.mktemp("rabbitmq-cluster"))
    try:
        cluster.start()
    except servers.ServiceUnavailableError as exc:
        cluster.shutdown()
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.shutdown()
