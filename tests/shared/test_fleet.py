"""Fleet requests (``shared.fleet``): who is live, from the keys processes already publish on
the real Redis, and one question asked of each over the real RabbitMQ, every target
answering or failing on its own."""

from __future__ import annotations

import time
import typing

import pytest

from shared import fleet, keys, rpc, status, topology

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc


@pytest.fixture
def names(namespace: str) -> keys.RedisKeys:
    return keys.RedisKeys(namespace, "main")


async def test_members_are_the_live_ones_of_a_role_sorted(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    now = time.time()
    stale = now - keys.HEALTH_TTL - 5
    await redis_client.zadd(names.gateway_index(), {"g2": now, "g1": now - 1, "gone": stale})
    await redis_client.zadd(names.workers(), {"w1": now, "dead": stale})
    assert await fleet.members(redis_client, names, "gateway") == ["g1", "g2"]
    assert await fleet.members(redis_client, names, "worker") == ["w1"]
    with pytest.raises(ValueError, match="unknown role 'lavalink'"):
        await fleet.members(redis_client, names, "lavalink")


async def test_gateway_statuses_skip_the_missing_and_the_unreadable(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    now = time.time()
    good = status.GatewayStatus(
        gateway="g1", pool="main", shard_count=2, at=now,
        shards={0: status.ShardStatus(connected=True, latency=0.05)},
    )  # fmt: skip
    await redis_client.set(names.gateway_status("g1"), good.to_json())
    await redis_client.set(names.gateway_status("g2"), b"{not json")
    # g3 is in the index but its status expired; g4 wrote one long ago and left the index.
    await redis_client.set(names.gateway_status("g4"), good.to_json().replace(b'"g1"', b'"g4"'))
    await redis_client.zadd(
        names.gateway_index(), {"g1": now, "g2": now, "g3": now, "g4": now - 10 * keys.HEALTH_TTL}
    )
    assert await fleet.gateway_statuses(redis_client, names) == [good]


async def test_no_gateway_means_no_status(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    assert await fleet.gateway_statuses(redis_client, names) == []


async def endpoint(
    connection: pika_abc.AbstractRobustConnection, namespace: str, process_id: str
) -> rpc.Endpoint:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    made = rpc.Endpoint(channel, topology.Topology(namespace), "main", process_id)
    await made.start()
    return made


async def test_each_live_process_answers_for_itself(
    redis_client: aioredis.Redis,
    names: keys.RedisKeys,
    amqp_connection: pika_abc.AbstractRobustConnection,
    namespace: str,
) -> None:
    now = time.time()
    await redis_client.zadd(names.gateway_index(), {"g1": now})
    # w2 is listed live but runs no endpoint: its entry fails, the others still answer.
    await redis_client.zadd(names.workers(), {"w1": now, "w2": now})
    caller = await endpoint(amqp_connection, namespace, "operator")
    processes = [await endpoint(amqp_connection, namespace, name) for name in ("g1", "w1")]
    for process in processes:

        async def who(args: typing.Any, me: str = process.process_id) -> dict[str, typing.Any]:
            return {"me": me, "args": args}

        process.answer("who", who)
    try:
        answers = await fleet.ask(caller, redis_client, names, "who", [1], timeout=5)
        by_target = {(a.role, a.target): a for a in answers}
        assert set(by_target) == {("gateway", "g1"), ("worker", "w1"), ("worker", "w2")}
        assert by_target["gateway", "g1"].value == {"me": "g1", "args": [1]}
        assert by_target["worker", "w1"].ok
        assert by_target["worker", "w1"].value == {"me": "w1", "args": [1]}
        missing = by_target["worker", "w2"]
        assert not missing.ok
        assert isinstance(missing.error, rpc.RpcError)
        assert "worker w2" in str(missing.error)

        only_gateways = await fleet.ask(
            caller, redis_client, names, "who", None, roles=["gateway"], timeout=5
        )
        assert [(a.role, a.target, a.value) for a in only_gateways] == [
            ("gateway", "g1", {"me": "g1", "args": None})
        ]
    finally:
        for process in [caller, *processes]:
            await process.close()
