"""Playback, simulated in real time: a track's position advances unless paused, it ends with
``TrackEndEvent`` (``finished``, ``replaced``, ``stopped``, ``loadFailed``); and what a session
is sent about it over the WebSocket (queued while the session is paused for resuming)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing

if typing.TYPE_CHECKING:
    from aiohttp import web

    from playground.lavalink import players, tracks

Json = dict[str, typing.Any]
_FRIENDLY = "com.sedmelluq.discord.lavaplayer.tools.FriendlyException"


def send(session: players.Session, message: Json) -> None:
    if session.ws is not None and not session.ws.closed:
        asyncio.get_running_loop().create_task(_send_now(session.ws, message))
    elif session.ws is None and message["op"] != "playerUpdate":
        session.pending.append(message)  # paused for resuming: queued, playerUpdates dropped


async def _send_now(ws: web.WebSocketResponse, message: Json) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_json(message)


def player_update(player: players.Player) -> Json:
    return {"op": "playerUpdate", "guildId": str(player.guild_id), "state": player.state()}


def event(player: players.Player, kind: str, **fields: typing.Any) -> None:
    send(
        player.session,
        {"op": "event", "type": kind, "guildId": str(player.guild_id), **fields},
    )


def cancel_end(player: players.Player) -> None:
    if player._end is not None:  # noqa: SLF001 - the emulator's own record
        player._end.cancel()  # noqa: SLF001
        player._end = None  # noqa: SLF001


def schedule_end(player: players.Player) -> None:
    cancel_end(player)
    if player.info is None or player.paused or player.info.is_stream:
        return
    end = (
        player.info.length if player.end_time is None else min(player.end_time, player.info.length)
    )
    remaining = max(end - player.position, 0) / 1000
    player._end = asyncio.get_running_loop().call_later(remaining, _finished, player)  # noqa: SLF001


def _finished(player: players.Player) -> None:
    player._end = None  # noqa: SLF001
    end_track(player, "finished")


def end_track(player: players.Player, reason: str) -> None:
    track = player.track()
    cancel_end(player)
    player.encoded, player.info, player.base_position, player.user_data = None, None, 0, {}
    player.end_time = None
    if track is not None:
        event(player, "TrackEndEvent", track=track, reason=reason)


def play(
    player: players.Player,
    encoded: str,
    info: tracks.TrackInfo,
    *,
    position: int,
    end_time: int | None,
    user_data: Json,
    paused: bool,
) -> None:
    if player.info is not None:
        end_track(player, "replaced")
    player.encoded, player.info, player.user_data = encoded, info, user_data
    player.base_position, player.started_at = min(position, info.length), time.monotonic()
    player.paused, player.end_time = paused, end_time
    if info.identifier.startswith("fail"):
        track = player.track()
        player.encoded, player.info = None, None
        event(
            player,
            "TrackExceptionEvent",
            track=track,
            exception={
                "message": "This track is not available",
                "severity": "common",
                "cause": f"{_FRIENDLY}: unavailable",
                "causeStackTrace": "",
            },
        )
        event(player, "TrackEndEvent", track=track, reason="loadFailed")
        return
    event(player, "TrackStartEvent", track=player.track())
    send(player.session, player_update(player))
    schedule_end(player)
