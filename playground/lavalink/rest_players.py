"""REST routes of sessions and players: ``PATCH /v4/sessions/{id}`` (resuming, timeout) and
``/v4/sessions/{id}/players[/{guild}]``, with Lavalink's checks (voice fields all required,
404 ``Session not found`` while a session is paused for resuming)."""

from __future__ import annotations

import fnmatch
import time
import typing

from aiohttp import web

from playground.lavalink import node as node_module
from playground.lavalink import playback, players, rest, tracks

Json = dict[str, typing.Any]


async def update_session(request: web.Request) -> web.Response:
    session = rest.session_of(request)
    body = await rest.json_body(request)
    if "resuming" in body:
        session.resuming = bool(body["resuming"])
    if "timeout" in body:
        session.timeout = int(body["timeout"])
    return web.json_response({"resuming": session.resuming, "timeout": session.timeout})


async def list_players(request: web.Request) -> web.Response:
    session = rest.session_of(request)
    return web.json_response([p.json() for p in session.players.values()])


async def get_player(request: web.Request) -> web.Response:
    session = rest.session_of(request)
    player = session.players.get(rest.guild_of(request))
    if player is None:
        raise rest.HTTPError(404, "Player not found")
    return web.json_response(player.json())


async def destroy_player(request: web.Request) -> web.Response:
    node = request.app[node_module.NODE]
    session = rest.session_of(request)
    node.requests.append(("DELETE", request.path, None))
    player = session.players.pop(rest.guild_of(request), None)
    if player is not None and player.info is not None:
        playback.end_track(player, "stopped")
    if player is not None:
        playback.cancel_all(player)
    return web.Response(status=204)


async def update_player(request: web.Request) -> web.Response:
    """PATCH a player, in Lavalink's order: validate, voice, then the current track's
    state or a new track, volume, filters (``PlayerRestHandler``)."""
    node = request.app[node_module.NODE]
    session = rest.session_of(request)
    guild_id = rest.guild_of(request)
    body = await rest.json_body(request)
    no_replace = request.query.get("noReplace", "false").lower() == "true"
    new_track = _validate_update(body)
    filters = _known_filters(node, body.get("filters"))
    player = session.players.get(guild_id)
    if player is None:
        player = session.players[guild_id] = players.Player(guild_id, session)
    if body.get("voice") is not None:
        voice = {f: str(body["voice"][f]) for f in players.VOICE_FIELDS}
        changed, player.voice = voice != player.voice, voice
        playback.connect_voice(
            player,
            unreachable=any(
                fnmatch.fnmatchcase(voice["endpoint"], pattern)
                for pattern in node.unreachable_endpoints
            ),
            delay=node.voice_connect_delay,
            changed=changed,
        )
    if new_track is None:
        _update_current(player, body)
    if "volume" in body:
        player.volume = max(0, min(int(body["volume"]), 1000))
    if filters is not None:
        player.filters = filters
        playback.send(session, playback.player_update(player))
    if new_track is not None and not (no_replace and player.info is not None):
        _start_new(node, player, new_track, body)
    return web.json_response(player.json())


def _validate_update(body: Json) -> Json | None:
    """The 400s of an update; returns the new track asked for, if any."""
    track = body.get("track")
    if track is not None and ("encodedTrack" in body or "identifier" in body):
        raise rest.HTTPError(400, "Cannot specify both track and encodedTrack/identifier")
    if isinstance(track, dict) and "encoded" in track and "identifier" in track:
        raise rest.HTTPError(400, "Cannot specify both encodedTrack and identifier")
    if body.get("endTime") is not None and int(body["endTime"]) <= 0:
        raise rest.HTTPError(400, "End time must be greater than 0")
    voice = body.get("voice")
    if voice is not None and (
        not isinstance(voice, dict) or any(not voice.get(f) for f in players.VOICE_FIELDS)
    ):
        raise rest.HTTPError(
            400, "token, endpoint, sessionId and channelId must be provided in voice state"
        )
    filters = body.get("filters")
    if filters is not None and not isinstance(filters, dict):
        raise rest.HTTPError(400, "filters must be an object")
    if isinstance(track, dict) and ("encoded" in track or "identifier" in track):
        return track
    if "encodedTrack" in body or "identifier" in body:
        return {"encoded": body.get("encodedTrack"), "identifier": body.get("identifier")}
    return None


def _known_filters(node: node_module.NodeState, filters: Json | None) -> Json | None:
    """docs/api/rest.md "Filters": the keys Lavalink knows. Its JSON reader ignores unknown keys
    (the protocol's ``ignoreUnknownKeys = true``), so an unknown filter is dropped, not a 400;
    a filter disabled in the config is the 400 (``PlayerRestHandler``)."""
    if filters is None:
        return None
    disabled = sorted(k for k in filters if k in node.disabled_filters)
    if disabled:
        raise rest.HTTPError(
            400, f"Following filters are disabled in the config: {', '.join(disabled)}"
        )
    return {k: v for k, v in filters.items() if k in (*players.FILTERS, "pluginFilters")}


def _update_current(player: players.Player, body: Json) -> None:
    """No new track: pause, user data, seek and end time apply to the current one."""
    if "paused" in body and player.info is not None:
        if body["paused"] and not player.paused:
            player.base_position, player.paused = player.position, True
        elif not body["paused"] and player.paused:
            player.paused, player.started_at = False, time.monotonic()
            player.playing_since = player.started_at
        playback.schedule_end(player)
    elif "paused" in body:
        player.paused = bool(body["paused"])
    if player.info is None:
        return
    track = body.get("track")
    if isinstance(track, dict) and "userData" in track:
        player.user_data = dict(track["userData"] or {})
    if "position" in body:
        player.base_position = max(0, min(int(body["position"]), player.info.length))
        player.started_at = time.monotonic()
        playback.schedule_end(player)
        playback.send(player.session, playback.player_update(player))
    if "endTime" in body:
        player.end_time = body["endTime"]
        playback.schedule_end(player)


def _start_new(
    node: node_module.NodeState, player: players.Player, new_track: Json, body: Json
) -> None:
    encoded = new_track.get("encoded")
    identifier = new_track.get("identifier")
    if encoded is None and identifier is None:
        if player.info is not None:
            playback.end_track(player, "stopped")
        return
    if encoded is None:
        found = [i for i in node.catalog.values() if identifier in {i.identifier, i.uri}]
        if not found:
            raise rest.HTTPError(400, "No matches found for identifier")
        info = found[0]
        encoded = tracks.encode(info)
    else:
        try:
            info = tracks.decode(str(encoded))
        except ValueError as exc:
            raise rest.HTTPError(500, f"Failed to decode track: {exc}") from None
    playback.play(
        player,
        str(encoded),
        info,
        position=int(body.get("position", 0) or 0),
        end_time=body.get("endTime"),
        user_data=dict(new_track.get("userData") or {}),
        paused=bool(body.get("paused", False)),
        threshold_ms=node.stuck_threshold_ms,
    )
