"""A real ``python -m gateway`` whose RabbitMQ is lost while it declares its exchanges: it
waits for the broker and then publishes; a SIGTERM during that wait ends it cleanly (found by
the soak: seed 3433, a gateway exited with a traceback from ``start()``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import typing
import urllib.parse

from tests import netproxy

if typing.TYPE_CHECKING:
    import pathlib

    from tests.gateway.conftest import Stack

#: An AMQP method frame's class and method ids for ``exchange.declare`` (AMQP 0-9-1, 40/10).
EXCHANGE_DECLARE = b"\x00\x28\x00\x0a"


async def _gateway_losing_the_broker(
    stack: Stack, log: pathlib.Path
) -> tuple[subprocess.Popen[bytes], netproxy.TcpProxy]:
    """A gateway started behind a proxy that cuts at its first exchange declare."""
    target = urllib.parse.urlsplit(stack.amqp_url)
    proxy = netproxy.TcpProxy(target.port or 5672)
    proxy.cut_when = lambda data: EXCHANGE_DECLARE in data
    await proxy.start()
    url = stack.amqp_url.replace(f":{target.port}", f":{proxy.port}")
    env = {**os.environ, **stack.env(AMQP_URL=url, SHARD_COUNT="1", SHARD_IDS="0")}
    with log.open("wb") as out:
        # Popen returns at once; the test waits for the process in an executor.
        process = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "gateway"], env=env, stderr=out, stdout=out
        )
    try:
        await asyncio.wait_for(proxy.tripped.wait(), 60)
        await asyncio.sleep(2)  # the broker stays away a while
        assert process.poll() is None, "the gateway exited when the broker went away"
    except BaseException:
        process.kill()
        process.wait()
        await proxy.close()
        raise
    return process, proxy


async def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.get_running_loop().run_in_executor(None, process.wait, 30)


async def test_a_gateway_that_loses_the_broker_while_declaring_publishes_after(
    stack: Stack, tmp_path: pathlib.Path
) -> None:
    discord = stack.discord
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    sink = await stack.listen(["MESSAGE_CREATE"])
    process, proxy = await _gateway_losing_the_broker(stack, tmp_path / "gateway.log")
    try:
        await proxy.restore()
        await discord.wait_for(lambda: discord.connected_shards() == [0], timeout=60)
        discord.send_message(channel_id, discord.add_user("alice"), "after the outage")
        await discord.wait_for(
            lambda: any(e["d"]["content"] == "after the outage" for e in sink.of("MESSAGE_CREATE")),
            timeout=30,
            what="the event published once the broker is back",
        )
        assert await _stop(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await proxy.close()
    assert b"RabbitMQ lost during start" in (tmp_path / "gateway.log").read_bytes()


async def test_a_sigterm_while_the_broker_is_away_during_start_exits_cleanly(
    stack: Stack, tmp_path: pathlib.Path
) -> None:
    process, proxy = await _gateway_losing_the_broker(stack, tmp_path / "gateway.log")
    try:
        assert await _stop(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await proxy.close()
    assert b"stopped before RabbitMQ answered" in (tmp_path / "gateway.log").read_bytes()
