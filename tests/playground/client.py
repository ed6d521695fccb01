"""A bare gateway client for testing the emulator byte by byte (no library in between)."""

from __future__ import annotations

import asyncio
import sys
import typing
import zlib

import aiohttp
import orjson

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

Json = dict[str, typing.Any]


class RawGatewayClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        compress: str | None,
    ) -> None:
        self.session = session
        self.ws = ws
        self.compress = compress
        self._zlib = zlib.decompressobj()
        self._zstd = zstd.ZstdDecompressor()
        self.raw_frames: list[bytes] = []

    @classmethod
    async def connect(
        cls, url: str, *, compress: str | None = None, version: int = 10
    ) -> RawGatewayClient:
        session = aiohttp.ClientSession()
        query = f"?v={version}&encoding=json" + (f"&compress={compress}" if compress else "")
        ws = await session.ws_connect(url + query, autoclose=False, max_msg_size=0)
        return cls(session, ws, compress)

    async def receive(self, timeout: float = 5.0) -> Json:
        message = await self.ws.receive(timeout=timeout)
        if message.type is aiohttp.WSMsgType.TEXT:
            return typing.cast("Json", orjson.loads(message.data))
        if message.type is aiohttp.WSMsgType.BINARY:
            self.raw_frames.append(message.data)
            if self.compress == "zlib-stream":
                assert message.data.endswith(b"\x00\x00\xff\xff")
                return typing.cast("Json", orjson.loads(self._zlib.decompress(message.data)))
            return typing.cast("Json", orjson.loads(self._zstd.decompress(message.data)))
        raise ConnectionError(f"closed: {message.type} {message.data} {message.extra}")

    async def receive_until(
        self, predicate: typing.Callable[[Json], bool], timeout: float = 5.0
    ) -> list[Json]:
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                payload = await self.receive(timeout)
                seen.append(payload)
                if predicate(payload):
                    return seen

    async def dispatch(self, name: str, timeout: float = 5.0) -> Json:
        seen = await self.receive_until(lambda p: p.get("t") == name, timeout)
        return seen[-1]

    async def send(self, op: int, d: typing.Any) -> None:
        await self.ws.send_str(orjson.dumps({"op": op, "d": d}).decode())

    async def identify(
        self, token: str, shard: list[int] | None = None, intents: int = 33281
    ) -> None:  # GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT
        d: Json = {
            "token": token,
            "intents": intents,
            "properties": {"os": "linux", "browser": "t", "device": "t"},
        }
        if shard is not None:
            d["shard"] = shard
        await self.send(2, d)

    async def closed_with(self, timeout: float = 5.0) -> int:
        """Read until the server closes; return its close code."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    code = self.ws.close_code if self.ws.close_code is not None else message.data
                    await self.close()
                    return int(code)

    async def close(self, code: int = 4000) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code)
        await self.session.close()
