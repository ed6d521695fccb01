"""The node's WebSocket (``/v4/websocket``): the handshake's checks (password 401,
``User-Id`` 400), ``ready``, ``stats`` and periodic ``playerUpdate``; a session that set
``resuming`` may reconnect with ``Session-Id`` within ``timeout`` and finds its players still
playing, the events of the gap replayed."""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time

import aiohttp
from aiohttp import web

from playground.lavalink import node as node_module
from playground.lavalink import playback, players, rest

_LOGGER = logging.getLogger("playground.lavalink")
_SESSION_ALPHABET = string.ascii_lowercase + string.digits


async def websocket(request: web.Request) -> web.StreamResponse:
    node = request.app[node_module.NODE]
    if request.headers.get("Authorization") != node.password:
        return rest.stamp(web.Response(status=401))
    try:
        user_id = int(request.headers.get("User-Id", "0"))
    except ValueError:
        user_id = 0
    if user_id == 0:
        return rest.stamp(web.Response(status=400))
    wanted = request.headers.get("Session-Id")
    previous = node.sessions.get(wanted) if wanted else None
    resumed = previous is not None and previous.ws is None and previous.resuming
    ws = web.WebSocketResponse(heartbeat=None)
    ws.headers["Session-Resumed"] = "true" if resumed else "false"
    rest.stamp(ws)
    await ws.prepare(request)
    node.connects += 1
    if resumed:
        assert previous is not None
        session = previous
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        session.ws = ws
        node.resumes += 1
        await ws.send_json({"op": "ready", "resumed": True, "sessionId": session.session_id})
        backlog, session.pending = session.pending, []
        for queued in backlog:
            await ws.send_json(queued)
        for player in session.players.values():
            await ws.send_json(playback.player_update(player))
    else:
        session_id = "".join(secrets.choice(_SESSION_ALPHABET) for _ in range(16))
        session = players.Session(
            session_id, user_id, ws, client_name=request.headers.get("Client-Name", "")
        )
        node.sessions[session_id] = session
        await ws.send_json({"op": "ready", "resumed": False, "sessionId": session_id})
        await ws.send_json(node.stats_message(session))
    async for frame in ws:
        if frame.type == aiohttp.WSMsgType.TEXT:
            _LOGGER.warning("Lavalink v4 does not support websocket messages")
    if session.ws is ws:
        session.ws = None
        if session.resuming and session.session_id in node.sessions:
            session.expiry = asyncio.get_running_loop().call_later(
                session.timeout, _expire, node, session
            )
        else:
            node.destroy_session(session)
    return ws


def _expire(node: node_module.NodeState, session: players.Session) -> None:
    if session.ws is None:
        node.destroy_session(session)


async def periodic(node: node_module.NodeState) -> None:
    last_stats = time.monotonic()
    while True:
        await asyncio.sleep(node.player_update_interval)
        for session in list(node.sessions.values()):
            for player in session.players.values():
                if player.info is not None:
                    playback.send(session, playback.player_update(player))
        if time.monotonic() - last_stats >= node.stats_interval:
            last_stats = time.monotonic()
            # Every session, paused ones included: while a session is paused its messages
            # are queued and replayed on resume (docs/api/index.md "Resuming"); only
            # playerUpdates are skipped while paused (Lavalink's sendPlayerUpdate).
            for session in list(node.sessions.values()):
                playback.send(session, node.stats_message(session))
