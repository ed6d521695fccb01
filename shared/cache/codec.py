"""Compact binary forms of the entities there are many of: users and members.

A member with two roles packs into about 33 bytes and a user into about 45, so that Redis keeps
them in listpack-encoded hashes (values up to 64 bytes by default) at a few bytes of overhead
each. A longer one (a member with six roles, a user with long names) is stored as pieces of
at most ``PIECE`` bytes (:func:`pieces`), since one value over Redis' limit would turn its whole
bucket into a hashtable. Everything else is stored as trimmed JSON. Decoding gives back
Discord's JSON shapes, which hikari's entity factory turns into models.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import typing

Json = dict[str, typing.Any]

_AVATAR: typing.Final = re.compile(r"^(a_)?([0-9a-f]{32})$")
_NONE_LEN: typing.Final = 0xFF
_USER_HEAD: typing.Final = struct.Struct(">BIH")  # bits, public_flags, discriminator
_MEMBER_HEAD: typing.Final = struct.Struct(">IHBIIB")  # joined, flags, bits, boost, timeout, roles
_ID: typing.Final = struct.Struct(">Q")
#: Where a packed member's role count sits; its role ids (8 bytes each) follow. The reader's
#: permission script cuts role ids out of packed members at these offsets.
ROLE_COUNT_OFFSET: typing.Final[int] = _MEMBER_HEAD.size - 1
_PAIR: typing.Final = struct.Struct(">QQ")

#: Redis' default ``hash-max-listpack-value``: a hash holding a longer field or value is
#: hashtable-encoded, at about 60 more bytes per entry for every entry of its bucket.
PIECE: typing.Final[int] = 64
#: Pieces a reader asks for at once (a member with up to 27 roles); more take another read.
FIRST_PIECES: typing.Final[int] = 4
#: The most pieces a packed member (255 roles, a 254-byte nick) or user can take.
MAX_PIECES: typing.Final[int] = (_MEMBER_HEAD.size + 255 * 8 + 255 + 16) // PIECE + 1

_BOT, _SYSTEM, _AVATAR_SET, _AVATAR_ANIMATED = 1, 2, 4, 8
_DEAF, _MUTE, _PENDING = 16, 32, 64


def _put_str(out: bytearray, value: str | None) -> None:
    if value is None:
        out.append(_NONE_LEN)
        return
    raw = value.encode()[:254]
    out.append(len(raw))
    out += raw


def _get_str(data: bytes, offset: int) -> tuple[str | None, int]:
    length = data[offset]
    offset += 1
    if length == _NONE_LEN:
        return None, offset
    return data[offset : offset + length].decode(errors="replace"), offset + length


def _avatar_bits(avatar: str | None) -> tuple[int, bytes]:
    if avatar is None:
        return 0, b""
    match = _AVATAR.match(avatar)
    if match is None:
        return 0, b""
    return _AVATAR_SET | (_AVATAR_ANIMATED if match.group(1) else 0), bytes.fromhex(match.group(2))


def _avatar_text(bits: int, raw: bytes) -> str | None:
    if not bits & _AVATAR_SET:
        return None
    return ("a_" if bits & _AVATAR_ANIMATED else "") + raw.hex()


def _timestamp(value: str | None) -> int:
    if not value:
        return 0
    # Packed as uint32 seconds (until 2106); later dates are clamped there.
    return min(max(int(dt.datetime.fromisoformat(value).timestamp()), 0), 0xFFFFFFFF)


def _iso(value: int) -> str | None:
    if value == 0:
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def id_bytes(value: int) -> bytes:
    return _ID.pack(value)


def pair_bytes(first: int, second: int) -> bytes:
    return _PAIR.pack(first, second)


def piece_field(field: bytes, index: int) -> bytes:
    """The field of a value's ``index``-th piece: the value's own for the first; longer than
    any member or user field for the others, so never one of theirs."""
    return field if index == 0 else field + bytes((index,))


def pieces(field: bytes, value: bytes) -> dict[bytes, bytes]:
    """``value`` as hash fields of at most ``PIECE`` bytes: under ``field`` itself when shorter
    (every member and user of ordinary size), else cut into pieces; a piece of exactly
    ``PIECE`` bytes is followed by another (maybe empty), so a reader knows where it ends.
    Pieces a longer earlier value left behind are never read (they follow a short piece)."""
    if len(value) < PIECE:
        return {field: value}
    return {
        piece_field(field, k): value[k * PIECE : (k + 1) * PIECE]
        for k in range(len(value) // PIECE + 1)
    }


def piece_fields(field: bytes, count: int = FIRST_PIECES, start: int = 0) -> list[bytes]:
    return [piece_field(field, k) for k in range(start, start + count)]


def joined(found: typing.Sequence[bytes | None]) -> tuple[bytes | None, bool]:
    """The value whose first pieces are ``found`` (as HMGET answers them), and whether it is
    complete (else more pieces follow those)."""
    if not found or found[0] is None:
        return None, True
    out = bytearray()
    for piece in found:
        out += piece or b""
        if piece is None or len(piece) < PIECE:
            return bytes(out), True
    return bytes(out), False


def lua_whole(name: str, key: str | None = None) -> str:
    """Lua: a function ``name(key, field)`` that reads back a value :func:`pieces` stored
    (``false`` if absent); given ``key`` (``KEYS[1]``), ``name(field)`` reading that key, so
    that a script visibly touches only its declared keys."""
    params, hash_key = ("field", key) if key else ("key, field", "key")
    return f"""
local function {name}({params})
  local piece = redis.call('HGET', {hash_key}, field)
  if not piece or #piece < {PIECE} then return piece end
  local parts, k = {{piece}}, 1
  repeat
    piece = redis.call('HGET', {hash_key}, field .. string.char(k)) or ''
    parts[#parts + 1] = piece
    k = k + 1
  until #piece < {PIECE}
  return table.concat(parts)
end
"""


def encode_user(user: Json) -> bytes:
    bits, avatar = _avatar_bits(user.get("avatar"))
    bits |= (_BOT if user.get("bot") else 0) | (_SYSTEM if user.get("system") else 0)
    try:
        discriminator = int(user.get("discriminator") or 0)
    except ValueError:
        discriminator = 0
    out = bytearray(_USER_HEAD.pack(bits, user.get("public_flags") or 0, discriminator))
    _put_str(out, user.get("username") or "")
    _put_str(out, user.get("global_name"))
    out += avatar
    return bytes(out)


def decode_user(user_id: int, data: bytes) -> Json:
    bits, public_flags, discriminator = _USER_HEAD.unpack_from(data)
    username, offset = _get_str(data, _USER_HEAD.size)
    global_name, offset = _get_str(data, offset)
    return {
        "id": str(user_id),
        "username": username or "",
        "global_name": global_name,
        "discriminator": str(discriminator) if discriminator else "0",
        "avatar": _avatar_text(bits, data[offset : offset + 16]),
        "bot": bool(bits & _BOT),
        "system": bool(bits & _SYSTEM),
        "public_flags": public_flags,
        "flags": public_flags,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
    }


def encode_member(member: Json) -> bytes:
    bits, avatar = _avatar_bits(member.get("avatar"))
    bits |= (
        (_DEAF if member.get("deaf") else 0)
        | (_MUTE if member.get("mute") else 0)
        | (_PENDING if member.get("pending") else 0)
    )
    roles = [int(r) for r in member.get("roles") or ()][:255]
    out = bytearray(
        _MEMBER_HEAD.pack(
            _timestamp(member.get("joined_at")),
            (member.get("flags") or 0) & 0xFFFF,
            bits,
            _timestamp(member.get("premium_since")),
            _timestamp(member.get("communication_disabled_until")),
            len(roles),
        )
    )
    for role in roles:
        out += _ID.pack(role)
    _put_str(out, member.get("nick"))
    out += avatar
    return bytes(out)


def decode_member(data: bytes) -> Json:
    """A member payload without ``user`` (the caller adds it)."""
    joined, flags, bits, boost, timeout, count = _MEMBER_HEAD.unpack_from(data)
    offset = _MEMBER_HEAD.size
    roles = [str(_ID.unpack_from(data, offset + 8 * i)[0]) for i in range(count)]
    offset += 8 * count
    nick, offset = _get_str(data, offset)
    return {
        "roles": roles,
        "nick": nick,
        "avatar": _avatar_text(bits, data[offset : offset + 16]),
        "joined_at": _iso(joined) or "1970-01-01T00:00:00+00:00",
        "premium_since": _iso(boost),
        "communication_disabled_until": _iso(timeout),
        "deaf": bool(bits & _DEAF),
        "mute": bool(bits & _MUTE),
        "pending": bool(bits & _PENDING),
        "flags": flags,
    }


def member_role_ids(data: bytes) -> list[int]:
    """Only the role ids of a packed member (the permission path needs nothing else)."""
    count = data[_MEMBER_HEAD.size - 1]
    return [_ID.unpack_from(data, _MEMBER_HEAD.size + 8 * i)[0] for i in range(count)]


def member_timed_out(data: bytes, now: float) -> bool:
    timeout: int = _MEMBER_HEAD.unpack_from(data)[4]
    return timeout > now
