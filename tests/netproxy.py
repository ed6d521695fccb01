"""A TCP proxy in front of a real server, to cut the network and restore it on demand, or to
hang it: connections are accepted and nothing is answered, as from a server that is stuck
(a long script, a stopped process, a full disk) rather than gone."""

from __future__ import annotations

import asyncio
import contextlib
import typing

from tests import servers


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = servers.free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        #: Cleared while hung: bytes are swallowed, in both directions.
        self._flowing = asyncio.Event()
        self._flowing.set()
        #: When set, the first client bytes it accepts are dropped and every connection cut
        #: (as :meth:`cut`): a server lost at a chosen moment of a protocol exchange.
        self.cut_when: typing.Callable[[bytes], bool] | None = None
        #: Set once ``cut_when`` cut.
        self.tripped = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, upstream=True),
            self._pipe(up_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not self._flowing.is_set():
                    continue  # hung: what was sent is never answered, nor applied later
                if upstream and self.cut_when is not None and self.cut_when(data):
                    self.cut_when = None
                    self.tripped.set()
                    await self.cut()  # the server never sees these bytes
                    return
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()

    async def cut(self) -> None:
        """Drop every connection and refuse new ones, as a dead broker would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    def hang(self) -> None:
        """Keep accepting connections and bytes, and forward nothing until :meth:`resume`:
        what is sent meanwhile is lost (a client gave up on it at its deadline anyway)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again what is sent from now on."""
        self._flowing.set()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
