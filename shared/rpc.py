"""Request/response over RabbitMQ: service calls and fleet questions, with typed remote errors.

Every process (gateway or worker) has one :class:`Endpoint`: its own exclusive queue on the
``{ns}.rpc`` exchange, where the answers to its requests arrive and where questions addressed
to it are asked. A request is an AMQP message with a correlation id, the caller's routing key
as ``reply_to``, an ``expiration`` equal to the caller's timeout (the broker drops a request
nobody took in time) and a deadline header in epoch milliseconds (a server skips a request
its caller gave up on).

Wire format (JSON bodies)::

    request  type="request"  {"m": method, "a": args}
    reply    type="reply"    {"ok": result} | {"err": {"type": "module.Class", "message": str}}

Only explicitly registered handlers are ever called; nothing is evaluated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing
import uuid

import aio_pika
import aio_pika.exceptions
import orjson

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

    from shared import topology as topology_module

__all__: typing.Sequence[str] = (
    "DEFAULT_TIMEOUT",
    "BadRequestError",
    "Endpoint",
    "Handler",
    "RemoteError",
    "RpcError",
    "RpcTimeoutError",
    "TargetUnavailableError",
    "UnknownMethodError",
    "serve_request",
)

_LOGGER = logging.getLogger("shardline.rpc")
#: How long a call waits for its answer unless told otherwise.
DEFAULT_TIMEOUT: typing.Final[float] = 10.0
HEADER_DEADLINE: typing.Final[str] = "x-shardline-deadline"
#: A request body larger than this is refused unread (1 MiB).
MAX_BODY: typing.Final[int] = 1 << 20

Handler = typing.Callable[[typing.Any], typing.Awaitable[typing.Any]]


def _type_name(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class RpcError(Exception):
    """A request did not produce an answer."""


class RpcTimeoutError(RpcError, TimeoutError):
    """No answer within the caller's timeout: the target is busy, hung, or nobody serves it."""


class TargetUnavailableError(RpcError):
    """The request could not be routed: the process (or service queue) does not exist."""


class RemoteError(RpcError):
    """The remote handler raised. Subclasses defined in code both sides load (a plugin, for
    example) travel as themselves: raise ``NotFound(...)`` in a service, catch ``NotFound``
    in the caller. Anything else arrives as ``RemoteError`` naming the remote type."""

    _registry: typing.ClassVar[dict[str, type[RemoteError]]] = {}

    def __init_subclass__(cls, **kwargs: typing.Any) -> None:
        super().__init_subclass__(**kwargs)
        RemoteError._registry[_type_name(cls)] = cls

    def __init__(self, message: str = "", *, remote_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remote_type = remote_type or _type_name(type(self))

    @classmethod
    def from_wire(cls, remote_type: str, message: str) -> RemoteError:
        known = cls._registry.get(remote_type)
        if known is not None:
            error = known.__new__(known)
            RemoteError.__init__(error, message, remote_type=remote_type)
            return error
        return RemoteError(f"{remote_type}: {message}", remote_type=remote_type)


class UnknownMethodError(RemoteError):
    """The target has no handler of that name."""


class BadRequestError(RemoteError):
    """The request was malformed, or its arguments were refused."""


# --- serving ----------------------------------------------------------------------------------


def _error_body(exc: BaseException) -> bytes:
    # An unexpected exception's text may carry anything (a URL with a key in it): the caller
    # gets its type; the server's log has the rest.
    message = exc.message if isinstance(exc, RemoteError) else "the handler failed; see its log"
    remote_type = exc.remote_type if isinstance(exc, RemoteError) else _type_name(type(exc))
    return orjson.dumps({"err": {"type": remote_type, "message": message}})


async def serve_request(
    exchange: pika_abc.AbstractExchange,
    message: pika_abc.AbstractIncomingMessage,
    handlers: typing.Mapping[str, Handler],
    *,
    what: str,
) -> None:
    """Answer one request with ``handlers``, then ack it. Never raises for bad input.

    ``what`` names the server in logs ("service twitch", "worker main-default-1a2b").
    """
    deadline = (message.headers or {}).get(HEADER_DEADLINE)
    if isinstance(deadline, int) and deadline < time.time() * 1000:
        _LOGGER.info("request skipped: its caller gave up", extra={"server": what})
        await message.ack()
        return
    try:
        body = orjson.dumps({"ok": await _dispatch(message.body, handlers, what)})
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not isinstance(exc, RemoteError):
            _LOGGER.exception("request handler failed", extra={"server": what})
        body = _error_body(exc)
    if message.reply_to:
        try:
            await exchange.publish(
                aio_pika.Message(body, correlation_id=message.correlation_id, type="reply"),
                routing_key=message.reply_to,
            )
        except aio_pika.exceptions.DeliveryError:
            _LOGGER.info("reply undeliverable: the caller is gone", extra={"server": what})
    await message.ack()


async def _dispatch(body: bytes, handlers: typing.Mapping[str, Handler], what: str) -> typing.Any:
    if len(body) > MAX_BODY:
        raise BadRequestError(f"request of {len(body)} bytes (limit {MAX_BODY})")
    try:
        request = orjson.loads(body)
        method, args = request["m"], request.get("a")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise BadRequestError("malformed request: expected {'m': method, 'a': args}") from None
    handler = handlers.get(method) if isinstance(method, str) else None
    if handler is None:
        raise UnknownMethodError(f"{what} has no handler {method!r}")
    return await handler(args)


# --- calling ----------------------------------------------------------------------------------


class Endpoint:
    """One process's RPC endpoint: makes requests, receives their replies, answers questions.

    Give it its own channel: replies must not wait behind the event consumer's prefetch.
    """

    def __init__(
        self,
        channel: pika_abc.AbstractChannel,
        topology: topology_module.Topology,
        pool: str,
        process_id: str,
    ) -> None:
        self.channel = channel
        self.topology = topology
        self.pool = pool
        self.process_id = process_id
        self.questions: dict[str, Handler] = {}
        self._exchange: pika_abc.AbstractExchange | None = None
        self._queue: pika_abc.AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    def answer(self, question: str, handler: Handler) -> None:
        """Answer ``question`` (a fleet request addressed to this process) with ``handler``."""
        self.questions[question] = handler

    @property
    def routing_key(self) -> str:
        return self.topology.process_key(self.pool, self.process_id)

    async def start(self) -> None:
        self._exchange = await self.topology.declare_rpc_exchange(self.channel)
        self._queue = await self.topology.declare_process_queue(
            self.channel, self.pool, self.process_id
        )
        # Safe to call again after a partial run (a broker lost during the start).
        if self._consumer_tag is None:
            self._consumer_tag = await self._queue.consume(self._on_message)

    async def close(self) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        self._consumer_tag = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RpcError("the endpoint closed before the answer came"))
        self._pending.clear()
        if self._serving:
            await asyncio.wait(set(self._serving), timeout=5)

    async def _on_message(self, message: pika_abc.AbstractIncomingMessage) -> None:
        if message.type == "reply":
            future = self._pending.get(message.correlation_id or "")
            if future is not None and not future.done():
                future.set_result(message.body)
            await message.ack()
            return
        assert self._exchange is not None
        task = asyncio.get_running_loop().create_task(
            serve_request(self._exchange, message, self.questions, what=self.process_id)
        )
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def request(
        self,
        routing_key: str,
        method: str,
        args: typing.Any = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        target: str,
    ) -> typing.Any:
        """Send ``method(args)`` to ``routing_key`` and return its result.

        Raises :class:`RpcTimeoutError`, :class:`TargetUnavailableError` or the remote error
        (a :class:`RemoteError`). ``target`` names the callee in those errors.
        """
        if self._exchange is None:
            raise RpcError("the RPC endpoint is not started")
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            message = aio_pika.Message(
                orjson.dumps({"m": method, "a": args}),
                correlation_id=correlation_id,
                reply_to=self.routing_key,
                type="request",
                expiration=max(timeout, 0.001),
                # Whole milliseconds: AMQP tables may carry floats as 32-bit, which rounds
                # an epoch time by minutes.
                headers={HEADER_DEADLINE: int((time.time() + timeout) * 1000)},
                content_type="application/json",
            )
            try:
                await self._exchange.publish(message, routing_key=routing_key, mandatory=True)
            except aio_pika.exceptions.DeliveryError:
                raise TargetUnavailableError(f"{target} is not reachable") from None
            try:
                body = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RpcTimeoutError(f"{target} did not answer within {timeout:g} s") from None
        finally:
            self._pending.pop(correlation_id, None)
        return _result(body)


def _result(body: bytes) -> typing.Any:
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RpcError("malformed reply") from None
    if isinstance(reply, dict) and "ok" in reply:
        return reply["ok"]
    error = reply.get("err") if isinstance(reply, dict) else None
    if isinstance(error, dict):
        raise RemoteError.from_wire(str(error.get("type")), str(error.get("message", "")))
    raise RpcError("malformed reply")
