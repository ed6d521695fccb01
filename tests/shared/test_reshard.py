"""The pool's re-shard record: stepping it, storing it signed, and moving it only from an
expected state (``shared.reshard``)."""

from __future__ import annotations

import time
import typing

import pytest

from shared import admin, keys, reshard
from shared.secret import Secret

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

State = reshard.State
KEY = Secret("k" * 32)


def test_a_step_is_signed_later_than_the_last_even_with_a_clock_behind() -> None:
    ahead = reshard.Reshard(1, 2, State.WARMING, at=time.time() + 3600)
    moved = reshard.step(ahead, State.SWITCHING)
    assert moved.at > ahead.at
    assert (moved.source, moved.target, moved.state) == (1, 2, State.SWITCHING)


async def test_a_saved_record_loads_back_only_with_the_key_that_signed_it(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    names = keys.RedisKeys(namespace, "main")
    assert await reshard.load(redis_client, names, KEY) is None
    record = reshard.Reshard(2, 4, State.WARMING)
    await reshard.save(redis_client, names, record, KEY)
    assert await reshard.load(redis_client, names, KEY) == record
    with pytest.raises(admin.ActionRefusedError):
        await reshard.load(redis_client, names, Secret("x" * 32))
    # The same record is no valid record of another namespace's pool.
    other = keys.RedisKeys(f"{namespace}x", "main")
    raw = await redis_client.hgetall(names.reshard())
    await redis_client.hset(other.reshard(), mapping=raw)
    try:
        with pytest.raises(admin.ActionRefusedError):
            await reshard.load(redis_client, other, KEY)
    finally:
        await redis_client.delete(other.reshard())


async def test_a_transition_writes_only_from_an_expected_state(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    names = keys.RedisKeys(namespace, "main")
    warming = reshard.Reshard(1, 2, State.WARMING)
    assert await reshard.transition(redis_client, names, warming, expected=[None], admin_key=KEY)
    assert not await reshard.transition(
        redis_client, names, reshard.Reshard(1, 3, State.WARMING), expected=[None], admin_key=KEY
    ), "a second re-shard cannot start over a running one"
    switching = reshard.step(warming, State.SWITCHING)
    assert not await reshard.transition(
        redis_client, names, switching, expected=[State.RETIRING], admin_key=KEY
    )
    assert await reshard.load(redis_client, names, KEY) == warming
    assert await reshard.transition(
        redis_client, names, switching, expected=[State.WARMING], admin_key=KEY
    )
    assert await reshard.load(redis_client, names, KEY) == switching


@pytest.mark.parametrize(
    ("state", "old", "new", "standby_new"),
    [
        # (does the old layout publish, the new one, the new one while standby)
        (State.WARMING, True, True, False),
        (State.SWITCHING, True, True, True),
        (State.RETIRING, False, True, True),
        (State.DONE, False, True, True),
    ],
)
def test_who_publishes_at_each_state(state: State, old: bool, new: bool, standby_new: bool) -> None:
    record = reshard.Reshard(1, 2, state, at=time.time())
    assert record.publishes(1, standby=False) is old
    assert record.publishes(2, standby=False) is new
    assert record.publishes(2, standby=True) is standby_new
