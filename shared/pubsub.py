"""Following a Redis pub/sub channel for as long as the process lives, through Redis outages."""

from __future__ import annotations

import asyncio
import contextlib
import typing

from shared import redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__: typing.Sequence[str] = ("follow",)


async def follow(
    redis: aioredis.Redis,
    channel: str,
    on_message: typing.Callable[[bytes | str], None],
    *,
    on_up: typing.Callable[[], typing.Awaitable[None]] | None = None,
    on_down: typing.Callable[[BaseException | None], None] | None = None,
    retry_after: float = 0.5,
) -> None:
    """Hand every message's data on ``channel`` to ``on_message``, until cancelled.

    ``on_up`` runs each time the subscription is (re)established, ``on_down`` each time it is
    lost (with the Redis error, or ``None`` when cancelled): between the two, messages may have
    been missed, and callers that keep copies must treat them as stale.
    """
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            _raise_if_cancelled()
            if on_up is not None:
                await on_up()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                _raise_if_cancelled()
                if message is not None:
                    on_message(message["data"])
        except asyncio.CancelledError:
            if on_down is not None:
                on_down(None)
            raise
        except redis_client.REDIS_ERRORS as exc:
            if on_down is not None:
                on_down(exc)
            await asyncio.sleep(retry_after)
        finally:
            with contextlib.suppress(*redis_client.REDIS_ERRORS):
                await pubsub.aclose()


def _raise_if_cancelled() -> None:
    """Honour a cancellation redis-py swallowed.

    redis-py 8.1 can return normally from ``subscribe`` when the task is cancelled while the
    connection is being made (seen in ``tests/shared/settings``: the follower then read on,
    and whoever awaited it hung); the request is still counted by ``Task.cancelling()``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
