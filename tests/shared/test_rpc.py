"""Request/response over the real RabbitMQ: answers, typed errors, bad and stale requests."""

from __future__ import annotations

import asyncio
import time
import typing

import aio_pika
import orjson
import pytest

from shared import rpc, topology

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc


Pair = tuple[rpc.Endpoint, rpc.Endpoint, list[typing.Any]]


class QuotaError(rpc.RemoteError):
    """A typed error both sides know."""


async def endpoint(
    connection: pika_abc.AbstractRobustConnection, namespace: str, process_id: str
) -> rpc.Endpoint:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    made = rpc.Endpoint(channel, topology.Topology(namespace), "main", process_id)
    await made.start()
    return made


@pytest.fixture
async def pair(
    amqp_connection: pika_abc.AbstractRobustConnection, namespace: str
) -> typing.AsyncIterator[Pair]:
    caller = await endpoint(amqp_connection, namespace, "caller")
    server = await endpoint(amqp_connection, namespace, "server")
    seen: list[typing.Any] = []

    async def echo(args: typing.Any) -> typing.Any:
        seen.append(args)
        return {"echo": args}

    async def over_quota(args: typing.Any) -> None:
        raise QuotaError(f"{args} is over quota")

    server.answer("echo", echo)
    server.answer("quota", over_quota)
    yield caller, server, seen
    await caller.close()
    await server.close()


def to_server(caller: rpc.Endpoint) -> str:
    return caller.topology.process_key("main", "server")


async def test_answers_and_typed_errors(
    pair: Pair,
) -> None:
    caller, _, _ = pair
    replies = await asyncio.gather(
        *(caller.request(to_server(caller), "echo", i, target="server") for i in range(20))
    )
    assert replies == [{"echo": i} for i in range(20)]
    with pytest.raises(QuotaError, match="7 is over quota") as raised:
        await caller.request(to_server(caller), "quota", 7, target="server")
    assert raised.value.remote_type.endswith("test_rpc.QuotaError")
    with pytest.raises(rpc.UnknownMethodError, match="server has no handler 'nope'"):
        await caller.request(to_server(caller), "nope", target="server")
    with pytest.raises(rpc.TargetUnavailableError, match="nobody is not reachable"):
        await caller.request(caller.topology.process_key("main", "gone"), "echo", target="nobody")


async def test_malformed_and_oversized_requests_get_a_clear_error(
    pair: Pair,
) -> None:
    caller, server, _ = pair
    assert server._exchange is not None
    for body, message in [
        (b"not json", "malformed request"),
        (b'{"a": 1}', "malformed request"),
        (orjson.dumps({"m": "echo", "a": "x" * (rpc.MAX_BODY + 1)}), "limit"),
    ]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        caller._pending["c1"] = future
        await server._exchange.publish(
            aio_pika.Message(
                body, correlation_id="c1", reply_to=caller.routing_key, type="request"
            ),
            routing_key=to_server(caller),
        )
        reply = orjson.loads(await asyncio.wait_for(future, 5))
        assert reply["err"]["type"] == "shared.rpc.BadRequestError"
        assert message in reply["err"]["message"]


async def test_a_request_whose_caller_gave_up_is_not_run(
    pair: Pair,
) -> None:
    caller, server, seen = pair
    assert server._exchange is not None
    await server._exchange.publish(
        aio_pika.Message(
            orjson.dumps({"m": "echo", "a": "stale"}),
            reply_to=caller.routing_key,
            type="request",
            headers={rpc.HEADER_DEADLINE: int((time.time() - 1) * 1000)},
        ),
        routing_key=to_server(caller),
    )
    assert await caller.request(to_server(caller), "echo", "fresh", target="server")
    assert seen == ["fresh"]


async def test_a_slow_answer_is_a_timeout_naming_the_target(
    pair: Pair,
) -> None:
    caller, server, _ = pair

    async def slow(args: typing.Any) -> None:
        await asyncio.sleep(5)

    server.answer("slow", slow)
    with pytest.raises(rpc.RpcTimeoutError, match=r"server did not answer within 0\.2 s"):
        await caller.request(to_server(caller), "slow", timeout=0.2, target="server")


def test_an_unknown_remote_type_arrives_as_remote_error_naming_it() -> None:
    error = rpc.RemoteError.from_wire("elsewhere.Mystery", "boom")
    assert type(error) is rpc.RemoteError
    assert str(error) == "elsewhere.Mystery: boom"
