"""A TCP proxy that adds latency on demand: the broker link the nemesis slows down.

Each chunk is held for ``delay`` seconds after it arrived, in order, in both directions (a
slow link, not a lossy one). ``cut()`` drops every connection, as when the broker dies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time


class DelayProxy:
    def __init__(self, listen_port: int, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = listen_port
        self.target_port = target_port
        #: Seconds each chunk waits before it is forwarded (0: none).
        self.delay = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, writer),
            self._pipe(up_reader, writer, up_writer),
            return_exceptions=True,
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
    ) -> None:
        held: collections.deque[tuple[float, bytes]] = collections.deque()
        arrived = asyncio.Event()
        done = False

        async def forward() -> None:
            while not (done and not held):
                if not held:
                    arrived.clear()
                    await arrived.wait()
                    continue
                due, data = held[0]
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                held.popleft()
                writer.write(data)
                await writer.drain()

        sender = asyncio.get_running_loop().create_task(forward())
        try:
            while data := await reader.read(65536):
                held.append((time.monotonic() + self.delay, data))
                arrived.set()
            done = True
            arrived.set()
            await sender
        finally:
            sender.cancel()
            for end in (writer, other):
                self._writers.discard(end)
                with contextlib.suppress(Exception):
                    end.transport.abort()
