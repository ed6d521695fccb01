"""A Redis error in one step of a shard restart or of a close: the other steps still run.

The error is real: the gateway connects to a private redis-server as its own ACL user, and the
test takes away that user's access to the session keys (every read or write of a session then
fails with NOPERM), as a Redis failing one step of a multi-step job would.
"""

from __future__ import annotations

import asyncio
import typing

import pytest
import redis.asyncio as aioredis

from shared import admin
from tests import servers
from tests.gateway.conftest import Stack

if typing.TYPE_CHECKING:
    import pathlib

pytestmark = pytest.mark.fault

_PASSWORD: typing.Final = "gateway-password"


class SessionKeysFail:
    """A private Redis whose ``gw`` user can be barred from the session keys."""

    def __init__(self, stack: Stack, directory: pathlib.Path) -> None:
        self.server = servers.PrivateRedis(directory)
        self.server.start()
        self.admin = aioredis.Redis.from_url(self.server.url)
        # The pool's coordination keys share one hash tag (shared/keys.py): their prefix.
        self._pooled = stack.keys.gateways().removesuffix(":gateways")
        url = f"redis://gw:{_PASSWORD}@127.0.0.1:{self.server.port}/0"
        self.stack = Stack(
            stack.discord, stack.namespace, stack.amqp_url, url, self.admin, stack.connection,
            stack.mongo_url, admin_key=stack.admin_key,
        )  # fmt: skip

    async def allow_everything(self) -> None:
        await self.admin.execute_command(
            "ACL", "SETUSER", "gw", "reset", "on", f">{_PASSWORD}", "~*", "&*", "+@all"
        )

    async def fail_sessions(self) -> None:
        """Every coordination key stays reachable; sessions do not."""
        allowed = [
            f"~{self._pooled}:{part}"
            for part in (
                "lease:*", "gateway*", "draining", "drain-requests", "restart-shards",
                "identify:*", "session-start", "interest*", "reshard", "redis-history",
            )
        ]  # fmt: skip
        await self.admin.execute_command("ACL", "SETUSER", "gw", "resetkeys", *allowed)

    async def close(self) -> None:
        await self.admin.aclose()
        self.server.stop()


@pytest.fixture
async def faulty(stack: Stack, tmp_path: pathlib.Path) -> typing.AsyncIterator[SessionKeysFail]:
    found = SessionKeysFail(stack, tmp_path)
    try:
        await found.allow_everything()
        yield found
    finally:
        await found.close()


async def test_a_shard_restart_completes_when_saving_its_session_fails(
    faulty: SessionKeysFail,
) -> None:
    stack = faulty.stack
    discord = stack.discord
    discord.add_guild("g")
    await stack.listen(["GUILD_CREATE", "MESSAGE_CREATE"])
    async with stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        assert gateway.group is not None
        group = gateway.group
        await discord.wait_for(lambda: discord.connected_shards() == [0])
        events = gateway.publisher
        assert events is not None
        await discord.wait_for(lambda: 0 in events.checkpoints(), what="a confirmed seq")
        await faulty.fail_sessions()
        connects = len(discord.records.identifies) + len(discord.records.resumes)
        request = admin.sign(
            stack.admin_key, stack.keys.prefix, admin.RESTART_SHARD, shard=0, shard_count=1
        )
        await stack.redis.hset(stack.keys.restart_requests(), "0", request)
        # Stopping could not write the seq; the shard comes back all the same (an IDENTIFY,
        # since its stored session cannot be read either) and the status loop goes on.
        await discord.wait_for(
            lambda: len(discord.records.identifies) + len(discord.records.resumes) > connects,
            timeout=20,
            what="the shard to connect again",
        )
        await discord.wait_for(lambda: discord.connected_shards() == [0], timeout=20)
        assert 0 in group.shards
        assert not await stack.redis.hexists(stack.keys.restart_requests(), "0")
        assert gateway.liveness() is None, "no loop ended"
        status_key = stack.keys.gateway_status(gateway.gateway_id)
        await stack.redis.delete(status_key)
        for _ in range(100):  # written again within a status round or two
            if await stack.redis.exists(status_key):
                break
            await asyncio.sleep(0.1)
        assert await stack.redis.exists(status_key), "the status loop goes on"


async def test_leases_are_released_at_close_when_saving_sessions_fails(
    faulty: SessionKeysFail,
) -> None:
    stack = faulty.stack
    discord = stack.discord
    discord.add_guild("g")
    await stack.listen(["GUILD_CREATE"])
    leases = [stack.keys.lease(s, 2) for s in range(2)]
    # A short TTL: the private Redis has just started, and hands out no lease for a TTL and 3 s.
    async with stack.gateway(SHARD_COUNT="2", LEASE_TTL="3") as gateway:
        assert gateway.group is not None
        group = gateway.group
        await discord.wait_for(lambda: sorted(group.shards) == [0, 1], timeout=20)
        await discord.wait_for(lambda: discord.connected_shards() == [0, 1], timeout=20)
        assert await stack.redis.exists(*leases) == 2
        await faulty.fail_sessions()
    # The close could not write the shards' seqs; it released their leases anyway, so a
    # successor takes them over now rather than when the leases expire.
    assert await stack.redis.exists(*leases) == 0
    assert not await stack.redis.zscore(stack.keys.gateways(), gateway.gateway_id)
