"""A real ``python -m worker`` whose RabbitMQ is lost while it declares its queues: it waits
for the broker, declares them again and serves (found by the soak: seed 51645, three replicas
exited with a traceback from ``start()``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import typing
import urllib.parse

from tests import netproxy
from tests.worker import test_runtime

if typing.TYPE_CHECKING:
    import pathlib

    from tests.gateway.conftest import Stack

#: An AMQP method frame's class and method ids for ``queue.declare`` (AMQP 0-9-1, 50/10).
QUEUE_DECLARE = b"\x00\x32\x00\x0a"


async def test_a_worker_that_loses_the_broker_while_declaring_its_queues_serves_after(
    stack: Stack, tmp_path: pathlib.Path
) -> None:
    discord = stack.discord
    _, channel_id = test_runtime.text_channel(stack)
    target = urllib.parse.urlsplit(stack.amqp_url)
    proxy = netproxy.TcpProxy(target.port or 5672)
    interactions = stack.topology.interaction_queue(stack.pool, "default").encode()
    # Cut when the replica declares its second queue: the first is declared, the second is
    # in flight when the broker goes.
    proxy.cut_when = lambda data: QUEUE_DECLARE in data and interactions in data
    await proxy.start()
    url = stack.amqp_url.replace(f":{target.port}", f":{proxy.port}")
    env = {**os.environ, **stack.env(AMQP_URL=url, WORKER_PLUGINS="worker.plugins.core")}
    with (tmp_path / "worker.log").open("wb") as log:
        # Popen returns at once; the test waits for the process in an executor.
        replica = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "worker"], env=env, stderr=log, stdout=log
        )
    try:
        await asyncio.wait_for(proxy.tripped.wait(), 60)
        await asyncio.sleep(2)  # the broker stays away a while
        assert replica.poll() is None, "the replica exited when the broker went away"
        await proxy.restore()
        async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
            await discord.wait_for(lambda: discord.connected_shards() == [0])
            publisher = gateway.publisher
            assert publisher is not None
            # The replica has bound its queues and announced them (after the broker is back).
            await discord.wait_for(
                lambda: "MESSAGE_CREATE" in (publisher.interests or ()),
                timeout=60,
                what="the replica's interests",
            )
            discord.send_message(channel_id, discord.add_user("alice"), "!ping")
            await discord.wait_for(
                lambda: any(
                    (m.get("content") or "").startswith("Pong!")
                    for m in test_runtime.channel_messages(stack, channel_id)
                ),
                timeout=60,
                what="the replica's answer once the broker is back",
            )
        replica.send_signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, replica.wait, 30)
        assert code == 0
    finally:
        if replica.poll() is None:
            replica.kill()
            replica.wait()
        await proxy.close()
    assert b"RabbitMQ lost during start" in (tmp_path / "worker.log").read_bytes()
