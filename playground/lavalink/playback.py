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


def cancel_all(player: players.Player) -> None:
    """The player is destroyed: nothing it scheduled happens."""
    for timer in player._timers:  # noqa: SLF001
        timer.cancel()
    player._timers.clear()  # noqa: SLF001
    cancel_end(player)


def cancel_end(player: players.Player) -> None:
    if player._end is not None:  # noqa: SLF001 - the emulator's own record
        player._end.cancel()  # noqa: SLF001
        player._end = None  # noqa: SLF001


def schedule_end(player: players.Player) -> None:
    cancel_end(player)
    if player.info is None or player.paused or player.stalled or player.info.is_stream:
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
    player.end_time, player.stalled = None, False
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
    threshold_ms: int = 10_000,
) -> None:
    if player.info is not None:
        end_track(player, "replaced")
    player.encoded, player.info, player.user_data = encoded, info, user_data
    player.base_position, player.started_at = min(position, info.length), time.monotonic()
    player.paused, player.end_time, player.stalled = paused, end_time, False
    player.playing_since = time.monotonic()
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
    if info.identifier.startswith("stuck"):
        stall(player, threshold_ms)


def stall(player: players.Player, threshold_ms: int) -> None:
    """The track gets no more audio: its position stops and it never ends by itself; once
    ``threshold_ms`` passes, ``TrackStuckEvent`` with ``thresholdMs`` (docs/api/websocket.md
    "TrackStuckEvent"). Lavaplayer keeps the track: it plays on if audio comes back, and a
    new track, a seek or a stop replaces it."""
    if player.info is None or player.stalled:
        return
    player.base_position, player.stalled = player.position, True
    cancel_end(player)
    encoded = player.encoded

    def stuck() -> None:
        if player.stalled and player.encoded == encoded:
            event(player, "TrackStuckEvent", track=player.track(), thresholdMs=threshold_ms)

    player._timers.append(  # noqa: SLF001
        asyncio.get_running_loop().call_later(threshold_ms / 1000, stuck)
    )


# Close codes after which Koe (Lavalink's voice library) reconnects by itself, with no event:
# 1006 abnormal closure, 4000 internal error, 4015 voice server crashed.
_KOE_RECONNECTS: typing.Final = frozenset({1006, 4000, 4015})


def connect_voice(
    player: players.Player, *, unreachable: bool, delay: float, changed: bool
) -> None:
    """A voice state was given (docs/api/rest.md "Voice State"): Lavalink opens a WebSocket to
    Discord's voice server at ``endpoint`` unless the same voice is already connected. Player
    State's ``connected`` (docs/api/websocket.md "Player State") is true only once that
    socket is open; it then sends a ``playerUpdate`` (SocketContext ``gatewayReady``). An
    endpoint nothing answers at never connects: ``connected`` stays false, ``ping`` -1.
    (Lavalink 4.2.2 leaves the PATCH waiting on such a connect; the emulator answers at once.)"""
    if not changed and player.connected:
        return
    player.connected = False
    if unreachable:
        return
    voice = dict(player.voice)

    def ready() -> None:
        if player.voice == voice:
            player.connected = True
            send(player.session, player_update(player))

    player._timers.append(asyncio.get_running_loop().call_later(delay, ready))  # noqa: SLF001


def close_voice(
    player: players.Player, code: int, reason: str, *, by_remote: bool, delay: float
) -> None:
    """Discord closes the voice WebSocket: ``WebSocketClosedEvent`` with ``code``, ``reason``,
    ``byRemote`` (docs/api/websocket.md "WebSocketClosedEvent"; codes from Discord's voice
    close event codes, e.g. 4006 session no longer valid, 4014 disconnected), then a
    ``playerUpdate`` showing ``connected: false`` (SocketContext ``gatewayClosed``). The player
    stays disconnected until it is given a voice state again. For 1006, 4000 and 4015 Koe
    reconnects by itself and no event is sent."""
    player.connected = False
    if code in _KOE_RECONNECTS:
        connect_voice(player, unreachable=False, delay=delay, changed=True)
        return
    event(player, "WebSocketClosedEvent", code=code, reason=reason, byRemote=by_remote)
    send(player.session, player_update(player))
