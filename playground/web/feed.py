"""The page's live feed (``/playground/live``, a WebSocket): messages as they change, and the
side panel's lines (kept for a page that connects later) about what the gateway and REST saw."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import typing

import orjson
from aiohttp import web

from playground.discord import protocol, records

Json = dict[str, typing.Any]

#: Panel entries kept for a page that connects later.
PANEL_BACKLOG: typing.Final[int] = 400
_OP_NAMES: typing.Final = {op.value: op.name for op in protocol.Op}


class LiveFeed:
    """The pages listening, the panel and its counters, and the tasks that write to pages."""

    def __init__(self, shards: typing.Callable[[], list[Json]]) -> None:
        """``shards`` tells the shards' state, sent with every panel line."""
        self._shards = shards
        self.panel: collections.deque[Json] = collections.deque(maxlen=PANEL_BACKLOG)
        self.counters: collections.Counter[str] = collections.Counter()
        self._sockets: dict[web.WebSocketResponse, asyncio.Queue[bytes]] = {}
        self._tasks: set[asyncio.Task[typing.Any]] = set()

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def live(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        self._sockets[ws] = queue
        writer = self.spawn(self._write(ws, queue))
        try:
            async for _ in ws:
                pass  # the page only listens
        finally:
            self._sockets.pop(ws, None)
            writer.cancel()
        return ws

    async def _write(self, ws: web.WebSocketResponse, queue: asyncio.Queue[bytes]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not ws.closed:
                await ws.send_bytes(await queue.get())

    def publish(self, event: Json) -> None:
        data = orjson.dumps(event)
        for ws, queue in list(self._sockets.items()):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                self.spawn(ws.close(message=b"too slow"))

    def note(self, kind: str, text: str, **extra: typing.Any) -> None:
        """A line in the page's side panel (kept for pages that connect later)."""
        entry = {"type": "panel", "kind": kind, "at": time.time(), "text": text, **extra}
        self.panel.append(entry)
        self.counters[kind] += 1
        self.publish({**entry, "shards": self._shards(), "counters": dict(self.counters)})

    def spawn(
        self, coro: typing.Coroutine[typing.Any, typing.Any, typing.Any]
    ) -> asyncio.Task[typing.Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def on_record(self, kind: str, record: object) -> None:
        if isinstance(record, records.IdentifyRecord):
            outcome = "accepted" if record.accepted else f"refused ({record.reason})"
            self.note(
                "identify",
                f"IDENTIFY shard {record.shard_id}/{record.shard_count}: {outcome}",
                shard=record.shard_id,
            )
        elif isinstance(record, records.ResumeRecord):
            outcome = (
                f"resumed, {record.replayed} events replayed"
                if record.accepted
                else f"refused ({record.reason})"
            )
            text = f"RESUME shard {record.shard_id}: {outcome}"
            self.note("resume", text, shard=record.shard_id)
        elif isinstance(record, records.CloseRecord):
            who = "client" if record.by_client else "Discord"
            self.note(
                "close",
                f"shard {record.shard_id} closed by {who}: {record.code} {record.reason}".rstrip(),
                shard=record.shard_id,
            )
        elif isinstance(record, records.GatewayCommandRecord):
            if record.op == protocol.Op.HEARTBEAT:
                self.counters["heartbeat"] += 1
                return
            name = _OP_NAMES.get(record.op, str(record.op))
            self.note("command", f"shard {record.shard_id} sent op {record.op} {name}")
        elif isinstance(record, records.RestCallRecord):
            remaining = "" if record.remaining is None else f" · {record.remaining} left"
            bucket = f" · bucket {record.bucket[:8]}" if record.bucket else ""
            self.note(
                "rest" if record.status != 429 else "ratelimit",
                f"{record.route} → {record.status}{bucket}{remaining}",
                status=record.status,
            )
        else:
            self.note(kind, str(record))


def message_view(message: Json, invoked: str | None = None) -> Json:
    """What the page draws: Discord's own message shape, minus what it does not need."""
    author = message["author"]
    return {
        "invoked": invoked,
        "id": message["id"],
        "channel_id": message["channel_id"],
        "author": {
            "id": author["id"],
            "name": author.get("global_name") or author["username"],
            "bot": bool(author.get("bot")),
        },
        "content": message.get("content") or "",
        "embeds": message.get("embeds") or [],
        "components": message.get("components") or [],
        "flags": message.get("flags") or 0,
        "timestamp": message["timestamp"],
        "edited": message.get("edited_timestamp") is not None,
        "mentions": [
            {"id": u["id"], "name": u.get("global_name") or u["username"]}
            for u in message.get("mentions") or []
        ],
    }
