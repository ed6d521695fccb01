"""Prompt waits against real Redis: timeouts clean up, answers reach only their waiter."""

from __future__ import annotations

import asyncio
import types
import typing

import pytest

from shared import keys
from worker.commands import prompts

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis


async def test_a_prompt_times_out_and_leaves_nothing_behind(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    waiting = prompts.Prompts(redis_client, redis_keys)
    await waiting.start()
    try:
        with pytest.raises(prompts.PromptTimeoutError):
            await waiting.next_message(1, 2, timeout=0.3)
        assert not await redis_client.exists(redis_keys.prompt(1, 2))
        with pytest.raises(prompts.PromptTimeoutError):
            await waiting.component(["never"], timeout=0.2)
        assert not await redis_client.exists(redis_keys.component_wait("never"))
    finally:
        await waiting.close()


async def test_an_answer_reaches_the_replica_that_waits_and_no_other(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    waiter, other = (
        prompts.Prompts(redis_client, redis_keys),
        prompts.Prompts(redis_client, redis_keys),
    )
    await waiter.start()
    await other.start()
    try:
        pending = asyncio.ensure_future(waiter.next_message(10, 20, timeout=5))
        for _ in range(500):  # until the wait is registered
            if await redis_client.exists(redis_keys.prompt(10, 20)):
                break
            await asyncio.sleep(0.01)
        prompt_id = (await redis_client.get(redis_keys.prompt(10, 20))).decode()
        await other._publish(
            prompt_id,
            "message",
            {"message_id": 1, "channel_id": 10, "author_id": 20, "content": "hi"},
        )
        answer = await pending
        assert answer.content == "hi"
        assert not other._waiting
    finally:
        await waiter.close()
        await other.close()


def message_from(channel_id: int, user_id: int) -> typing.Any:
    return types.SimpleNamespace(
        id=1, channel_id=channel_id, author=types.SimpleNamespace(id=user_id), content="x"
    )


async def gets(redis_client: aioredis.Redis) -> int:
    stats = await redis_client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def test_messages_nobody_waits_for_cost_no_redis_round_trip(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    waiter = prompts.Prompts(redis_client, redis_keys)
    other = prompts.Prompts(redis_client, redis_keys)
    await waiter.start()
    await other.start()
    try:
        before = await gets(redis_client)
        for user_id in range(50):
            assert not await other.offer_message(message_from(10, user_id))
        assert await gets(redis_client) == before
        pending = asyncio.ensure_future(waiter.next_message(10, 7, timeout=5))
        for _ in range(500):  # until the announcement reached the other replica
            if other._open:
                break
            await asyncio.sleep(0.01)
        late = prompts.Prompts(redis_client, redis_keys)  # started after the prompt opened
        await late.start()
        try:
            assert await late.offer_message(message_from(10, 7))
        finally:
            await late.close()
        assert (await pending).author_id == 7
        for _ in range(500):  # the closing announcement
            if not other._open:
                break
            await asyncio.sleep(0.01)
        assert not await other.offer_message(message_from(10, 7))
    finally:
        await waiter.close()
        await other.close()


async def test_a_check_that_raises_counts_as_no_match_and_delivery_goes_on(
    redis_client: aioredis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    waiter = prompts.Prompts(redis_client, redis_keys)
    await waiter.start()

    def picky(answer: prompts.Answer) -> bool:
        return int(answer.content) > 0  # "boom" raises ValueError

    async def answer_when_open(channel_id: int, *contents: str) -> None:
        key = redis_keys.prompt(channel_id, 20)
        for _ in range(500):
            if await redis_client.exists(key):
                break
            await asyncio.sleep(0.01)
        prompt_id = (await redis_client.get(key)).decode()
        for content in contents:
            answer = {"message_id": 1, "channel_id": channel_id, "author_id": 20}
            await waiter._publish(prompt_id, "message", {**answer, "content": content})

    try:
        pending = asyncio.ensure_future(waiter.next_message(10, 20, timeout=5, check=picky))
        await answer_when_open(10, "boom", "boom", "0", "7")
        assert (await pending).content == "7"
        raised = [r for r in caplog.records if "check raised" in r.getMessage()]
        assert len(raised) == 1, "logged once, with the exception"
        assert raised[0].exc_info is not None
        # This replica's delivery goes on for the next prompt too.
        later = asyncio.ensure_future(waiter.next_message(11, 20, timeout=5))
        await answer_when_open(11, "hello")
        assert (await later).content == "hello"
    finally:
        await waiter.close()
