"""Waiting for a user's answer when the answer may reach another replica.

A handler waiting for the author's next message registers the wait in Redis
(``prompt(channel, user)`` -> prompt id, with the timeout as TTL) and announces it on the pool's
prompt channel, so every replica knows which (channel, user) pairs have a prompt open without
asking Redis for each message it consumes. Whichever replica consumes that user's next message
in that channel treats it as an answer rather than a command and publishes it on the same
channel; the waiting replica applies the check and wakes the handler. (While a replica's
subscription is down it asks Redis for every message instead.)

Waiting for a button or select works the same way through ``component_wait(custom_id)``; the
replica that receives the click acknowledges it at once (a deferred update), so Discord's
3-second deadline does not depend on the waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
import typing

import hikari
import orjson

from shared import keys, lifecycle, pubsub, redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__: typing.Sequence[str] = ("Answer", "ComponentAnswer", "PromptTimeoutError", "Prompts")

_LOGGER = logging.getLogger("shardline.worker.prompts")


class PromptTimeoutError(TimeoutError):
    """Nobody answered in time."""


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    message_id: int
    channel_id: int
    author_id: int
    content: str


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentAnswer:
    custom_id: str
    values: tuple[str, ...]
    user_id: int
    #: For follow-ups and edits of the clicked message (valid 15 minutes).
    application_id: int
    token: str


class Prompts:
    def __init__(self, redis: aioredis.Redis, redis_keys: keys.RedisKeys) -> None:
        self._redis = redis
        self._keys = redis_keys
        self._waiting: dict[str, tuple[asyncio.Future[typing.Any], typing.Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        #: Prompt keys some replica announced as open, with when they expire (monotonic).
        self._open: dict[str, float] = {}
        #: Prompts whose ``check`` raised (logged once each).
        self._check_failed: set[str] = set()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=2)

    async def close(self) -> None:
        if self._task is not None:
            await lifecycle.cancel_and_wait([self._task])
        for future, _ in self._waiting.values():
            future.cancel()

    # --- the waiting side -------------------------------------------------------------------

    async def next_message(
        self,
        channel_id: int,
        user_id: int,
        *,
        timeout: float,
        check: typing.Callable[[Answer], bool] | None = None,
        registered: typing.Callable[[], typing.Awaitable[object]] | None = None,
    ) -> Answer:
        """The user's next message in the channel that passes ``check``. ``registered`` runs
        once the wait is known to every replica (ask the question there: an answer typed at
        once is then never missed)."""
        prompt_id = secrets.token_hex(8)
        key = self._keys.prompt(channel_id, user_id)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[prompt_id] = (future, check)
        ttl_ms = max(int(timeout * 1000), 1)
        try:
            # Two commands: a Redis Cluster takes no PUBLISH in a pipeline or MULTI.
            await self._redis.set(key, prompt_id, px=ttl_ms)
            await self._redis.publish(self._keys.prompt_channel(), _notice("open", key, ttl_ms))
            if registered is not None:
                await registered()
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise PromptTimeoutError("no answer in time") from None
        finally:
            self._waiting.pop(prompt_id, None)
            self._check_failed.discard(prompt_id)
            with contextlib.suppress(*redis_client.REDIS_ERRORS):
                if await self._release(key, prompt_id):
                    await self._redis.publish(
                        self._keys.prompt_channel(), _notice("closed", key, 0)
                    )

    async def component(
        self, custom_ids: typing.Iterable[str], *, timeout: float
    ) -> ComponentAnswer:
        """The first click (or selection) on one of ``custom_ids``."""
        prompt_id = secrets.token_hex(8)
        future: asyncio.Future[ComponentAnswer] = asyncio.get_running_loop().create_future()
        self._waiting[prompt_id] = (future, None)
        names = [self._keys.component_wait(c) for c in custom_ids]
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for name in names:
                    pipe.set(name, prompt_id, px=max(int(timeout * 1000), 1))
                await pipe.execute()
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise PromptTimeoutError("no click in time") from None
        finally:
            self._waiting.pop(prompt_id, None)
            with contextlib.suppress(*redis_client.REDIS_ERRORS):
                for name in names:
                    await self._release(name, prompt_id)

    async def _release(self, key: str, prompt_id: str) -> bool:
        current = await self._redis.get(key)
        if current is not None and redis_client.text(current) == prompt_id:
            await self._redis.delete(key)
            return True
        return False

    # --- the consuming side (any replica) ---------------------------------------------------

    async def offer_message(self, message: hikari.Message) -> bool:
        """Forward ``message`` if a prompt waits for it; ``True`` when it was an answer."""
        key = self._keys.prompt(int(message.channel_id), int(message.author.id))
        if self._subscribed.is_set():
            # The announcements say whether a prompt is open: most messages cost nothing here.
            until = self._open.get(key)
            if until is None:
                return False
            if until < time.monotonic():
                del self._open[key]
                return False
        prompt_id = await self._redis.get(key)
        if prompt_id is None:
            return False
        answer = {
            "message_id": int(message.id), "channel_id": int(message.channel_id),
            "author_id": int(message.author.id), "content": message.content or "",
        }  # fmt: skip
        await self._publish(redis_client.text(prompt_id), "message", answer)
        return True

    async def offer_component(self, interaction: hikari.ComponentInteraction) -> bool:
        """Acknowledge and forward a click some replica waits for; ``True`` when one did."""
        prompt_id = await self._redis.get(self._keys.component_wait(interaction.custom_id))
        if prompt_id is None:
            return False
        await interaction.create_initial_response(hikari.ResponseType.DEFERRED_MESSAGE_UPDATE)
        answer = {
            "custom_id": interaction.custom_id, "values": list(interaction.values),
            "user_id": int(interaction.user.id),
            "application_id": int(interaction.application_id), "token": interaction.token,
        }  # fmt: skip
        await self._publish(redis_client.text(prompt_id), "component", answer)
        return True

    async def _publish(self, prompt_id: str, kind: str, answer: dict[str, typing.Any]) -> None:
        body = orjson.dumps({"prompt": prompt_id, "kind": kind, "answer": answer})
        await self._redis.publish(self._keys.prompt_channel(), body)

    async def _follow(self) -> None:
        await pubsub.follow(
            self._redis,
            self._keys.prompt_channel(),
            self._deliver,
            on_up=self._up,
            on_down=self._down,
        )

    async def _up(self) -> None:
        """Learn the prompts opened while this replica was not listening, then trust the
        announcements."""
        found: dict[str, float] = {}
        now = time.monotonic()
        async for raw in self._redis.scan_iter(self._keys.prompts_pattern(), count=500):
            ttl_ms = await self._redis.pttl(raw)
            if ttl_ms > 0:
                found[redis_client.text(raw)] = now + ttl_ms / 1000
        self._open = found
        self._subscribed.set()

    def _down(self, exc: BaseException | None) -> None:
        self._subscribed.clear()
        if exc is not None:
            _LOGGER.warning("prompt answers not followed", extra={"error": str(exc)})

    def _deliver(self, data: bytes | str) -> None:
        try:
            event = orjson.loads(data)
            if event["kind"] == "open":
                self._open[event["key"]] = time.monotonic() + event["ttl_ms"] / 1000
                return
            if event["kind"] == "closed":
                self._open.pop(event["key"], None)
                return
            waiting = self._waiting.get(event["prompt"])
            if waiting is None:
                return  # another replica's prompt
            future, check = waiting
            if event["kind"] == "message":
                message = Answer(**event["answer"])
                if check is not None and not self._passes(event["prompt"], check, message):
                    return
                answer: Answer | ComponentAnswer = message
            else:
                raw = event["answer"]
                answer = ComponentAnswer(**{**raw, "values": tuple(raw["values"])})
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            _LOGGER.warning("malformed prompt answer", extra={"error": str(exc)})
            return
        if not future.done():
            future.set_result(answer)

    def _passes(
        self, prompt_id: str, check: typing.Callable[[Answer], bool], answer: Answer
    ) -> bool:
        """A ``check`` that raises did not match: the wait (and this replica's delivery of
        every other prompt) goes on; the exception is logged once per prompt."""
        try:
            return bool(check(answer))
        except Exception:
            if prompt_id not in self._check_failed:
                self._check_failed.add(prompt_id)
                _LOGGER.exception("a prompt's check raised; counted as not matched")
            return False


def _notice(kind: str, key: str, ttl_ms: int) -> bytes:
    return orjson.dumps({"kind": kind, "key": key, "ttl_ms": ttl_ms})
