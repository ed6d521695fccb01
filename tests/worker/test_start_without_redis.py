"""A replica started while its Redis hangs (connections accepted, nothing answered)."""

from __future__ import annotations

import asyncio
import typing
import urllib.parse

from shared import config
from tests import netproxy
from worker import app
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack


async def test_a_replica_started_while_redis_hangs_starts_and_consumes(stack: Stack) -> None:
    """Found by the soak (seed 51645): a replica restarted during a Redis hang exited with a
    traceback from reading its previous interests; it now starts, and its events flow."""
    target = urllib.parse.urlsplit(stack.redis_url)
    proxy = netproxy.TcpProxy(target.port or 6379)
    await proxy.start()
    proxy.hang()
    url = stack.redis_url.replace(f":{target.port}", f":{proxy.port}")
    replica = app.WorkerApp(
        config.WorkerSettings.from_env(stack.env(REDIS_URL=url)), bot_module.Bot()
    )
    try:
        await asyncio.wait_for(replica.start(), 60)
        assert replica.consumer is not None
    finally:
        proxy.resume()
        await replica.close()
        await proxy.close()
