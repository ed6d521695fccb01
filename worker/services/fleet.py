"""``bot.fleet``: questions this replica answers, and asking the whole pool one."""

from __future__ import annotations

import typing

from shared import fleet, rpc

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys as keys_module

__all__: typing.Sequence[str] = ("Fleet",)


class Fleet:
    """Register answers with ``@bot.fleet.answer("name")``; ask with ``await bot.fleet.ask``.

    Only registered questions are answered (an unknown one gets ``UnknownMethodError``).
    """

    def __init__(self) -> None:
        self.answers: dict[str, rpc.Handler] = {}
        self._endpoint: rpc.Endpoint | None = None
        self._redis: aioredis.Redis | None = None
        self._keys: keys_module.RedisKeys | None = None

    def answer(self, question: str) -> typing.Callable[[rpc.Handler], rpc.Handler]:
        def decorator(handler: rpc.Handler) -> rpc.Handler:
            self.answers[question] = handler
            if self._endpoint is not None:
                self._endpoint.answer(question, handler)
            return handler

        return decorator

    def attach(
        self, endpoint: rpc.Endpoint, redis: aioredis.Redis, keys: keys_module.RedisKeys
    ) -> None:
        self._endpoint, self._redis, self._keys = endpoint, redis, keys
        for question, handler in self.answers.items():
            endpoint.answer(question, handler)

    async def ask(
        self,
        question: str,
        args: typing.Any = None,
        *,
        roles: typing.Iterable[str] = ("gateway", "worker"),
        timeout: float = fleet.DEFAULT_TIMEOUT,
    ) -> list[fleet.FleetAnswer]:
        """Every live gateway's and/or worker's answer (or the error standing in for it)."""
        if self._endpoint is None or self._redis is None or self._keys is None:
            raise rpc.RpcError("fleet requests are not available before the worker has started")
        return await fleet.ask(
            self._endpoint, self._redis, self._keys, question, args, roles=roles, timeout=timeout
        )
