"""The Lavalink v4 emulator answers as Lavalink's documentation says (real sockets)."""

from __future__ import annotations

import asyncio
import typing

import aiohttp
import pytest

from playground.lavalink import emulator, tracks

Json = dict[str, typing.Any]
VOICE = {"token": "t", "endpoint": "voice.example:443", "sessionId": "s", "channelId": "5"}


@pytest.fixture
async def node() -> typing.AsyncIterator[emulator.LavalinkEmulator]:
    made = emulator.LavalinkEmulator(player_update_interval=0.2)
    await made.start()
    yield made
    await made.close()


@pytest.fixture
async def http() -> typing.AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Client:
    """A minimal Lavalink client: one WebSocket, REST with the password."""

    def __init__(self, node: emulator.LavalinkEmulator, http: aiohttp.ClientSession) -> None:
        self.node, self.http = node, http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.session_id = ""
        self.messages: asyncio.Queue[Json] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, session_id: str | None = None) -> Json:
        headers = {"Authorization": self.node.password, "User-Id": "42", "Client-Name": "t/1"}
        if session_id:
            headers["Session-Id"] = session_id
        self.ws = await self.http.ws_connect(f"{self.node.url}/v4/websocket", headers=headers)
        ready = await self.ws.receive_json()
        self.session_id = ready["sessionId"]
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return typing.cast("Json", ready)

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            await self.messages.put(message.json())

    async def next(
        self,
        op: str,
        kind: str | None = None,
        timeout: float = 5.0,
        where: typing.Callable[[Json], bool] = lambda _: True,
    ) -> Json:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.messages.get()
                kind_matches = kind is None or message.get("type") == kind
                if message["op"] == op and kind_matches and where(message):
                    return message

    async def rest(self, method: str, path: str, **kwargs: typing.Any) -> aiohttp.ClientResponse:
        headers = {"Authorization": self.node.password}
        response = await self.http.request(
            method, f"{self.node.url}{path}", headers=headers, **kwargs
        )
        await response.read()
        return response

    async def player(self, guild: int, body: Json, query: str = "") -> Json:
        response = await self.rest(
            "PATCH", f"/v4/sessions/{self.session_id}/players/{guild}{query}", json=body
        )
        assert response.status == 200, await response.text()
        return typing.cast("Json", await response.json())

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def test_password_user_id_and_api_version(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    missing = await http.get(f"{node.url}/v4/info")
    wrong = await http.get(f"{node.url}/v4/info", headers={"Authorization": "nope"})
    right = await http.get(f"{node.url}/v4/info", headers={"Authorization": node.password})
    assert (missing.status, wrong.status, right.status) == (401, 403, 200)
    assert right.headers["Lavalink-Api-Version"] == "4"
    assert (await right.json())["version"]["major"] == 4
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{node.url}/v4/websocket", headers={"Authorization": "nope"})
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as no_user:
        await http.ws_connect(f"{node.url}/v4/websocket", headers={"Authorization": node.password})
    assert no_user.value.status == 400


async def test_load_tracks_and_decode_round_trip(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    info = node.add_track("Never Gonna Give You Up", 212_000, identifier="dQw4w9WgXcQ")
    client = Client(node, http)
    found = await (
        await client.rest("GET", "/v4/loadtracks?identifier=ytsearch:never gonna")
    ).json()
    assert found["loadType"] == "search"
    [track] = found["data"]
    assert track["info"]["title"] == info.title
    assert (track["pluginInfo"], track["userData"], track["info"]["isrc"]) == ({}, {}, None)
    assert tracks.decode(track["encoded"]) == info  # Lavaplayer's binary format, round-tripped
    by_uri = await (await client.rest("GET", f"/v4/loadtracks?identifier={info.uri}")).json()
    assert by_uri["loadType"] == "track"
    empty = await (await client.rest("GET", "/v4/loadtracks?identifier=ytsearch:zzz")).json()
    assert empty == {"loadType": "empty", "data": None}
    error = await (await client.rest("GET", "/v4/loadtracks?identifier=error:x")).json()
    assert error["loadType"] == "error"
    assert error["data"]["severity"] == "fault"
    decoded = await client.rest("GET", "/v4/decodetrack", params={"encodedTrack": track["encoded"]})
    assert (await decoded.json())["encoded"] == track["encoded"]


async def test_play_pause_seek_replace_and_end(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    short = tracks.encode(node.add_track("Short", 600))
    long = tracks.encode(node.add_track("Long", 60_000))
    client = Client(node, http)
    ready = await client.connect()
    assert ready["resumed"] is False
    assert len(ready["sessionId"]) == 16
    assert (await client.next("stats"))["frameStats"] is None
    bad = await client.rest(
        "PATCH",
        f"/v4/sessions/{client.session_id}/players/1",
        json={"voice": {**VOICE, "channelId": ""}},
    )
    assert bad.status == 400
    assert "channelId must be provided" in (await bad.json())["message"]
    player = await client.player(
        1, {"voice": VOICE, "track": {"encoded": long, "userData": {"by": 7}}}
    )
    assert player["voice"] == VOICE
    assert player["track"]["userData"] == {"by": 7}
    start = await client.next("event", "TrackStartEvent")
    assert start["guildId"] == "1"
    await client.player(1, {"paused": True})
    paused_at = node.player(1).position  # type: ignore[union-attr]
    await asyncio.sleep(0.3)
    assert node.player(1).position == paused_at  # type: ignore[union-attr]
    await client.player(1, {"paused": False, "position": 59_700})
    # Periodic updates from before the seek may still be queued: wait for one after it.
    update = await client.next("playerUpdate", where=lambda m: m["state"]["position"] >= 59_700)
    assert update["state"]["position"] <= 60_000
    end = await client.next("event", "TrackEndEvent")
    assert end["reason"] == "finished"
    await client.player(1, {"track": {"encoded": long}})
    await client.player(1, {"track": {"encoded": short}}, "?noReplace=true")  # ignored
    assert node.player(1).info.title == "Long"  # type: ignore[union-attr]
    await client.player(1, {"track": {"encoded": short}})
    assert (await client.next("event", "TrackEndEvent"))["reason"] == "replaced"
    assert (await client.next("event", "TrackEndEvent"))["reason"] == "finished"
    deleted = await client.rest("DELETE", f"/v4/sessions/{client.session_id}/players/1")
    assert deleted.status == 204
    missing = await client.rest("GET", f"/v4/sessions/{client.session_id}/players/1")
    assert (missing.status, (await missing.json())["message"]) == (404, "Player not found")
    await client.close()


async def test_a_resumed_session_keeps_playing_and_replays_the_gap(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    song = tracks.encode(node.add_track("Song", 1_500))
    first = Client(node, http)
    await first.connect()
    session = await first.rest(
        "PATCH", f"/v4/sessions/{first.session_id}", json={"resuming": True, "timeout": 5}
    )
    assert await session.json() == {"resuming": True, "timeout": 5}
    await first.player(9, {"voice": VOICE, "track": {"encoded": song}})
    await first.close()  # the gateway process goes away mid-track
    gone = await first.rest("GET", f"/v4/sessions/{first.session_id}/players")
    assert gone.status == 404  # a paused session answers nothing until resumed
    await asyncio.sleep(1.6)  # the track ends during the gap
    second = Client(node, http)
    ready = await second.connect(first.session_id)
    assert ready == {"op": "ready", "resumed": True, "sessionId": first.session_id}
    replayed = await second.messages.get()  # the gap's event comes first, then the players
    assert (replayed["type"], replayed["guildId"], replayed["reason"]) == (
        "TrackEndEvent",
        "9",
        "finished",
    )
    assert (await second.messages.get())["op"] == "playerUpdate"
    assert node.resumes == 1
    await second.close()


async def test_an_unresumable_session_and_a_restart_lose_the_players(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    song = tracks.encode(node.add_track("Song", 60_000))
    client = Client(node, http)
    await client.connect()
    await client.player(3, {"voice": VOICE, "track": {"encoded": song}})
    await client.close()  # resuming was never enabled
    again = Client(node, http)
    ready = await again.connect(client.session_id)
    assert ready["resumed"] is False
    assert ready["sessionId"] != client.session_id
    assert node.player(3) is None
    await again.player(3, {"voice": VOICE, "track": {"encoded": song}})
    await node.restart(downtime=0.1)
    assert node.player(3) is None
    assert again.ws is not None
    await asyncio.wait_for(again._reader, 5)
    assert again.ws.close_code == 1001


async def test_errors_are_lavalink_json_with_the_api_version_and_trace_on_request(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    client = Client(node, http)
    unknown = await client.rest("GET", "/v4/nothing")
    body = await unknown.json()
    assert unknown.status == 404
    assert unknown.headers["Lavalink-Api-Version"] == "4"
    assert set(body) == {"timestamp", "status", "error", "message", "path"}
    assert (body["status"], body["error"], body["path"]) == (404, "Not Found", "/v4/nothing")
    method = await client.rest("PUT", "/v4/info")
    assert method.status == 405
    assert method.headers["Lavalink-Api-Version"] == "4"
    assert (await method.json())["error"] == "Method Not Allowed"
    traced = await client.rest("GET", "/v4/sessions/nope/players?trace=true")
    traced_body = await traced.json()
    assert (traced.status, traced_body["message"]) == (404, "Session not found")
    assert isinstance(traced_body["trace"], str)
    assert traced_body["trace"]


async def test_unknown_filters_are_ignored_and_disabled_ones_refused(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    client = Client(node, http)
    await client.connect()
    player = await client.player(1, {"filters": {"volume": 0.5, "nightcore": {"x": 1}}})
    assert player["filters"] == {"volume": 0.5}
    node.disabled_filters.add("karaoke")
    refused = await client.rest(
        "PATCH",
        f"/v4/sessions/{client.session_id}/players/1",
        json={"filters": {"karaoke": {}}},
    )
    assert refused.status == 400
    assert "disabled in the config: karaoke" in (await refused.json())["message"]
    await client.close()


async def test_voice_connects_only_to_a_reachable_server_and_reports_its_closing(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    client = Client(node, http)
    await client.connect()
    node.unreachable_endpoints.add("dead.example:443")
    dead = await client.player(1, {"voice": {**VOICE, "endpoint": "dead.example:443"}})
    assert dead["state"]["connected"] is False
    await asyncio.sleep(0.2)
    assert node.player(1).state()["connected"] is False  # type: ignore[union-attr]
    assert node.player(1).state()["ping"] == -1  # type: ignore[union-attr]
    alive = await client.player(2, {"voice": VOICE})
    assert alive["state"]["connected"] is False  # not before Discord's voice server answers
    ready = await client.next("playerUpdate", where=lambda m: m["guildId"] == "2")
    assert ready["state"]["connected"] is True
    node.close_voice(2, 4014, "Disconnected.")
    closed = await client.next("event", "WebSocketClosedEvent")
    assert (closed["guildId"], closed["code"], closed["reason"], closed["byRemote"]) == (
        "2",
        4014,
        "Disconnected.",
        True,
    )
    after = await client.next("playerUpdate", where=lambda m: m["guildId"] == "2")
    assert after["state"]["connected"] is False
    node.close_voice(2, 4015)  # Koe reconnects by itself: no event
    await client.player(2, {"voice": {**VOICE, "token": "new"}})
    again = await client.next("playerUpdate", where=lambda m: m["state"]["connected"])
    assert again["guildId"] == "2"
    await client.close()


async def test_a_stalled_track_sends_track_stuck_and_stops_advancing(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    node.stuck_threshold_ms = 200
    stuck = tracks.encode(node.add_track("Stuck", 60_000, identifier="stuck1"))
    client = Client(node, http)
    await client.connect()
    await client.player(1, {"voice": VOICE, "track": {"encoded": stuck}})
    event = await client.next("event", "TrackStuckEvent")
    assert event["thresholdMs"] == 200
    assert event["track"]["info"]["identifier"] == "stuck1"
    player = node.player(1)
    assert player is not None
    frozen = player.position
    await asyncio.sleep(0.2)
    assert player.position == frozen
    assert player.track() is not None  # Lavaplayer keeps the stuck track
    await client.close()


async def test_frame_stats_and_stats_queued_while_paused(
    node: emulator.LavalinkEmulator, http: aiohttp.ClientSession
) -> None:
    node.frame_window, node.nulled_frames, node.stats_interval = 0.0, 10, 0.2
    song = tracks.encode(node.add_track("Song", 60_000))
    client = Client(node, http)
    await client.connect()
    assert (await client.next("stats"))["frameStats"] is None  # no players yet
    await client.player(1, {"voice": VOICE, "track": {"encoded": song}})
    await client.next("playerUpdate", where=lambda m: m["state"]["connected"])
    stats = await client.next("stats", where=lambda m: m["frameStats"] is not None)
    assert stats["frameStats"] == {"sent": 2990, "nulled": 10, "deficit": 0}
    rest_stats = await (await client.rest("GET", "/v4/stats")).json()
    assert "frameStats" not in rest_stats or rest_stats["frameStats"] is None
    await client.rest(
        "PATCH", f"/v4/sessions/{client.session_id}", json={"resuming": True, "timeout": 5}
    )
    await client.close()
    await asyncio.sleep(0.7)  # paused: stats keep coming, queued
    session = next(iter(node.sessions.values()))
    assert any(m["op"] == "stats" for m in session.pending)
    second = Client(node, http)
    await second.connect(client.session_id)
    assert (await second.next("stats", timeout=1))["frameStats"] is not None
    await second.close()
