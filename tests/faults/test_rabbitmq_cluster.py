"""The platform on a three-node RabbitMQ cluster: the gateway→worker flow, queues replicated
on every node, and a node killed (kill -9) under load: the one the gateway is connected to,
and the one leading the workers' quorum queue. Each counts what was lost and handled twice
(the recording plugin) and how long until every event sent was handled.

Who is where: the gateway names node 0 first, the worker node 1, and the workers' queues are
declared from node 2 first (a quorum queue's leader starts on the node that declared it), so
each kill hits one role only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import typing

import pytest

from shared import amqp, config
from shared.gateway_commands import GatewayCommandError, RefusalReason
from shared.secret import Secret
from tests import servers
from tests.faults.test_faults import Load, _gateway_listens
from worker import remote_shard

if typing.TYPE_CHECKING:
    import pathlib

    from gateway import publisher as gateway_publisher
    from tests.faults.conftest import Row
    from tests.gateway.conftest import Stack

# Three nodes start within the first test (about 20 s here, more on a loaded machine).
pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

GATEWAY_NODE = 0
WORKER_NODE = 1
LEADER_NODE = 2


@pytest.fixture
async def cluster_stack(
    stack: Stack, rabbitmq_cluster: servers.RabbitMQCluster
) -> typing.AsyncIterator[Stack]:
    """The stack with every node of the cluster in ``AMQP_URL`` (node 0 first) and the
    workers' queues declared, led from node 2."""
    connection = await amqp.connect(
        [Secret(url) for url in rabbitmq_cluster.url_list(LEADER_NODE).split(",")]
    )
    on_cluster = dataclasses.replace(
        stack, amqp_url=rabbitmq_cluster.url_list(GATEWAY_NODE), connection=connection
    )
    channel = await connection.channel()
    names = on_cluster.topology
    names.quorum_size = 3
    queues = await names.declare_worker_queues(channel, stack.pool, "default", ["MESSAGE_CREATE"])
    for queue in queues:
        await names.declare_retry_queues(channel, queue.name, config.DEFAULT_RETRY_DELAYS)
    yield on_cluster
    await connection.close()


def _replicas(cluster: servers.RabbitMQCluster, stack: Stack) -> dict[str, int]:
    names = stack.topology
    work = names.worker_queue(stack.pool, "default")
    queues = [
        work,
        names.interaction_queue(stack.pool, "default"),
        names.dead_letter_queue,
        *(names.retry_queue(work, delay) for delay in config.DEFAULT_RETRY_DELAYS),
    ]
    return {queue: len(cluster.queue_members(queue)) for queue in queues}


async def test_cluster_runs_the_gateway_to_worker_flow_with_every_queue_replicated(
    cluster_stack: Stack, rabbitmq_cluster: servers.RabbitMQCluster, tmp_path: pathlib.Path
) -> None:
    load = Load(cluster_stack, tmp_path)
    try:
        load.spawn_worker(AMQP_URL=rabbitmq_cluster.url_list(WORKER_NODE))
        await load.workers_ready(1)
        async with cluster_stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await load.discord.wait_for(lambda: load.discord.connected_shards() == [0])
            await _gateway_listens(gateway)
            await load.send(60, rate=100)
            await load.all_handled(timeout=30)
        counts = await load.counts()
        assert len(counts) == load.sent
        assert set(counts.values()) == {1}
        # Work, interactions, dead letters and every retry queue: one replica per node.
        assert set(_replicas(rabbitmq_cluster, cluster_stack).values()) == {3}
        leader = rabbitmq_cluster.queue_leader(
            cluster_stack.topology.worker_queue(cluster_stack.pool, "default")
        )
        assert leader is rabbitmq_cluster.nodes[LEADER_NODE]
    finally:
        await load.stop_all()


async def _node_killed_under_load(
    stack: Stack,
    cluster: servers.RabbitMQCluster,
    tmp_path: pathlib.Path,
    victim: int,
    scenario: str,
) -> Row:
    load = Load(stack, tmp_path)
    node = cluster.nodes[victim]
    try:
        load.spawn_worker(AMQP_URL=cluster.url_list(WORKER_NODE))
        await load.workers_ready(1)
        async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await load.discord.wait_for(lambda: load.discord.connected_shards() == [0])
            await _gateway_listens(gateway)
            sending = asyncio.get_running_loop().create_task(load.send(400, rate=100))
            await asyncio.sleep(1.5)
            assert gateway.publisher is not None
            confirmed = gateway.publisher.stats.published_messages
            node.stop()  # SIGKILL: a crash, or a node cut off
            killed = time.monotonic()
            stall = await _publishing_stall(gateway.publisher, confirmed, killed)
            await sending
            done_at = await load.all_handled(timeout=90)
        print(  # noqa: T201 - the measured times, for docs/operations.md
            f"{scenario}: publishing stalled {stall:.2f} s; every event handled "
            f"{done_at - killed:.1f} s after the kill (sending ended {2.5:.1f} s after it)"
        )
        return await load.row(scenario, done_at - killed, 30, "none lost")
    finally:
        await load.stop_all()
        await asyncio.get_running_loop().run_in_executor(None, cluster.restart, node)


async def _publishing_stall(
    publisher: gateway_publisher.EventPublisher, confirmed: int, since: float
) -> float:
    """Seconds from ``since`` until the broker confirms a publish that came after the kill
    (events go on arriving at 100/s): how long the node loss held publishing up."""
    # One message of the shard may be in flight at the kill (PUBLISH_WINDOW): its confirm
    # may still come from the dying node.
    for _ in range(3000):
        if publisher.stats.published_messages > confirmed + 1:
            break
        await asyncio.sleep(0.01)
    return time.monotonic() - since


async def test_cluster_node_the_gateway_uses_is_killed_under_load(
    cluster_stack: Stack,
    rabbitmq_cluster: servers.RabbitMQCluster,
    tmp_path: pathlib.Path,
    fault_report: typing.Callable[[Row], None],
) -> None:
    row = await _node_killed_under_load(
        cluster_stack,
        rabbitmq_cluster,
        tmp_path,
        GATEWAY_NODE,
        "RabbitMQ cluster: the gateway's node killed",
    )
    fault_report(row)
    assert row.lost == 0
    assert row.duplicates == 0
    assert row.recovery < row.bound


async def test_cluster_node_leading_the_work_queue_is_killed_under_load(
    cluster_stack: Stack,
    rabbitmq_cluster: servers.RabbitMQCluster,
    tmp_path: pathlib.Path,
    fault_report: typing.Callable[[Row], None],
) -> None:
    work = cluster_stack.topology.worker_queue(cluster_stack.pool, "default")
    assert rabbitmq_cluster.queue_leader(work) is rabbitmq_cluster.nodes[LEADER_NODE]
    row = await _node_killed_under_load(
        cluster_stack,
        rabbitmq_cluster,
        tmp_path,
        LEADER_NODE,
        "RabbitMQ cluster: the work queue's leader killed",
    )
    fault_report(row)
    assert row.lost == 0
    assert row.duplicates == 0
    assert row.recovery < row.bound


async def _until_sent(shard: remote_shard.RemoteShard, timeout: float) -> float:
    """Send a presence update until the gateway answers that it sent it; the time it took.
    Refusals while the gateway reconnects must be typed ones, never a hang."""
    started = time.monotonic()
    seen: set[RefusalReason] = set()
    while True:
        try:
            await shard.update_presence()
            break
        except GatewayCommandError as exc:
            seen.add(exc.reason)
        assert time.monotonic() - started < timeout, f"still refused: {seen}"
        await asyncio.sleep(0.2)
    assert seen <= {RefusalReason.NO_ROUTE, RefusalReason.CONNECTION_LOST}, seen
    return time.monotonic() - started


async def test_cluster_gateway_commands_survive_node_losses_with_typed_refusals(
    cluster_stack: Stack, rabbitmq_cluster: servers.RabbitMQCluster
) -> None:
    """The gateway's reply queue (exclusive: it dies with its node's connection) comes back
    bound on another node; a worker whose node dies mid-call gets ``CONNECTION_LOST`` at once,
    and its reply consumer works again after the reconnect. One node down at a time, as a
    three-node cluster tolerates."""
    discord = cluster_stack.discord
    discord.add_guild("g")
    # This "worker" starts on node 2 (the gateway on node 0 fails over to node 1).
    worker_side = await amqp.connect(
        [Secret(url) for url in rabbitmq_cluster.url_list(LEADER_NODE).split(",")]
    )
    gateway_node = rabbitmq_cluster.nodes[GATEWAY_NODE]
    worker_node = rabbitmq_cluster.nodes[LEADER_NODE]
    loop = asyncio.get_running_loop()
    try:
        channel = await worker_side.channel(publisher_confirms=True)
        replies = remote_shard.CommandReplies(channel, timeout=60)
        shard = remote_shard.RemoteShard(
            channel, pool="main", namespace=cluster_stack.namespace, shard_id=0, shard_count=1,
            replies=replies,
        )  # fmt: skip
        async with cluster_stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            await _until_sent(shard, 10)
            gateway_node.stop()
            back = await _until_sent(shard, 30)
            # Its two exclusive queues are declared and bound again on the node it moved to.
            names, pool = cluster_stack.topology, cluster_stack.pool
            reply, process = (
                names.reply_queue(pool, gateway.gateway_id),
                names.process_queue(pool, gateway.gateway_id),
            )
            assert {
                (names.commands_exchange, reply, names.gateway_key(gateway.gateway_id)),
                (names.commands_exchange, reply, names.shard_key(pool, 0)),
                (names.rpc_exchange, process, names.process_key(pool, gateway.gateway_id)),
            } <= rabbitmq_cluster.bindings()
            await loop.run_in_executor(None, rabbitmq_cluster.restart, gateway_node)
            # A call waiting for an answer that cannot come when the worker's node dies: its
            # command parked in a (replicated) queue nobody consumes.
            waits = await cluster_stack.connection.channel()
            parked = await cluster_stack.topology.declare_quorum(
                waits, f"{cluster_stack.namespace}.waits", {}
            )
            stuck = remote_shard.RemoteShard(
                channel, pool="main", namespace=cluster_stack.namespace, shard_id=0,
                shard_count=1, reply_to=parked.name, replies=replies,
            )  # fmt: skip
            call = loop.create_task(stuck.update_presence())
            await asyncio.sleep(0.5)
            worker_node.stop()
            killed = time.monotonic()
            with pytest.raises(GatewayCommandError) as lost:
                await call
            ended_after = time.monotonic() - killed
            assert lost.value.reason is RefusalReason.CONNECTION_LOST
            again = await _until_sent(shard, 30)
        print(  # noqa: T201 - the measured times, for docs/operations.md
            f"commands answered again {back:.1f} s after the gateway's node died; a waiting "
            f"call ended {ended_after:.2f} s after the worker's; answered again {again:.1f} s later"
        )
        assert ended_after < 5  # not the call's 60-s timeout
    finally:
        await worker_side.close()
        for node in (gateway_node, worker_node):
            if not servers.port_open(node.port):
                await loop.run_in_executor(None, rabbitmq_cluster.restart, node)
