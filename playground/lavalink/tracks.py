"""Tracks as Lavalink v4 shows them, and Lavaplayer's binary track encoding.

``encoded`` is what real Lavalink sends: standard base64 of Lavaplayer's message format
(``DefaultAudioPlayerManager.encodeTrack``), version 3, big-endian::

    int32 (1 << 30 | payload size)  u8 version  UTF title  UTF author  int64 length
    UTF identifier  bool isStream  nullableUTF uri  nullableUTF artworkUrl  nullableUTF isrc
    UTF sourceName  int64 position

(UTF: u16 byte length + modified UTF-8; nullableUTF: bool present, then UTF.) Clients treat it
as opaque, but some decode it locally, so the emulator writes the real format.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import struct
import typing

__all__: typing.Sequence[str] = ("TrackInfo", "decode", "encode", "track_json")

_FLAG_VERSIONED: typing.Final[int] = 1
_VERSION: typing.Final[int] = 3


@dataclasses.dataclass(frozen=True, slots=True)
class TrackInfo:
    identifier: str
    title: str
    author: str
    length: int  # ms
    uri: str | None = None
    source_name: str = "http"
    is_stream: bool = False
    artwork_url: str | None = None
    isrc: str | None = None
    position: int = 0

    def json(self) -> dict[str, typing.Any]:
        return {
            "identifier": self.identifier,
            "isSeekable": not self.is_stream,
            "author": self.author,
            "length": self.length,
            "isStream": self.is_stream,
            "position": self.position,
            "title": self.title,
            "uri": self.uri,
            "sourceName": self.source_name,
            "artworkUrl": self.artwork_url,
            "isrc": self.isrc,
        }


def _utf(out: io.BytesIO, text: str) -> None:
    raw = text.encode("utf-8")
    out.write(struct.pack(">H", len(raw)))
    out.write(raw)


def _nullable_utf(out: io.BytesIO, text: str | None) -> None:
    out.write(struct.pack(">?", text is not None))
    if text is not None:
        _utf(out, text)


def encode(info: TrackInfo) -> str:
    body = io.BytesIO()
    body.write(struct.pack(">B", _VERSION))
    _utf(body, info.title)
    _utf(body, info.author)
    body.write(struct.pack(">q", info.length))
    _utf(body, info.identifier)
    body.write(struct.pack(">?", info.is_stream))
    _nullable_utf(body, info.uri)
    _nullable_utf(body, info.artwork_url)
    _nullable_utf(body, info.isrc)
    _utf(body, info.source_name)
    body.write(struct.pack(">q", info.position))
    payload = body.getvalue()
    header = struct.pack(">i", (_FLAG_VERSIONED << 30) | len(payload))
    return base64.b64encode(header + payload).decode()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> typing.Any:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ValueError("truncated track")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value

    def utf(self) -> str:
        size = self.take(">H")
        raw = self.data[self.at : self.at + size]
        if len(raw) != size:
            raise ValueError("truncated track")
        self.at += size
        return raw.decode("utf-8")

    def nullable_utf(self) -> str | None:
        return self.utf() if self.take(">?") else None


def decode(encoded: str) -> TrackInfo:
    """Parse ``encoded``; raises ValueError for anything that is not a Lavaplayer track."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    reader = _Reader(data)
    header = reader.take(">i")
    if (header >> 30) & _FLAG_VERSIONED == 0 or (header & 0x3FFFFFFF) != len(data) - 4:
        raise ValueError("not a versioned track message")
    version = reader.take(">B")
    title, author, length = reader.utf(), reader.utf(), reader.take(">q")
    identifier, is_stream = reader.utf(), reader.take(">?")
    uri = reader.nullable_utf() if version >= 2 else None
    artwork = reader.nullable_utf() if version >= 3 else None
    isrc = reader.nullable_utf() if version >= 3 else None
    source = reader.utf()
    position = reader.take(">q")
    return TrackInfo(
        identifier, title, author, length, uri, source, is_stream, artwork, isrc, position
    )


def track_json(
    encoded: str, info: TrackInfo, user_data: dict[str, typing.Any] | None = None
) -> dict[str, typing.Any]:
    """The Track object of Lavalink's REST and WebSocket messages."""
    return {"encoded": encoded, "info": info.json(), "pluginInfo": {}, "userData": user_data or {}}
