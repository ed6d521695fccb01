"""Music through Lavalink, end to end: the Discord and Lavalink emulators, a real gateway, worker
replicas, RabbitMQ, Redis, MongoDB."""

from __future__ import annotations

import contextlib
import os
import time
import typing

import aiohttp
import pytest

from shared import config
from worker import app
from worker import bot as bot_module
from worker.plugins import music

if typing.TYPE_CHECKING:
    from playground.lavalink import emulator as lavalink_emulator
    from tests.gateway.conftest import Stack

Json = dict[str, typing.Any]


class Scene:
    """A guild with a text channel, a voice channel and a listener in it."""

    def __init__(self, stack: Stack, node: lavalink_emulator.LavalinkEmulator) -> None:
        self.stack = stack
        self.discord = stack.discord
        self.node = node
        guild = self.discord.add_guild("g")
        self.guild_id = int(guild["id"])
        self.text_id = int(self.discord.channels_of(self.guild_id)[0]["id"])
        self.voice_id = int(self.discord.add_voice_channel(self.guild_id)["id"])
        self.user = self.discord.add_user("listener")
        self.discord.add_member(self.guild_id, self.user, announce=False)

    def env(self, **extra: str) -> dict[str, str]:
        return self.stack.env(
            LAVALINK_URL=self.node.url, LAVALINK_PASSWORD=self.node.password, **extra
        )

    @contextlib.asynccontextmanager
    async def workers(self, count: int = 1) -> typing.AsyncIterator[list[app.WorkerApp]]:
        started: list[app.WorkerApp] = []
        try:
            for _ in range(count):
                bot = bot_module.Bot()
                music.setup(bot)
                replica = app.WorkerApp(config.WorkerSettings.from_env(self.env()), bot)
                await replica.start()
                started.append(replica)
            yield started
        finally:
            for replica in started:
                await replica.close()

    def gateway(self) -> typing.AsyncContextManager[typing.Any]:
        return self.stack.gateway(
            SHARD_COUNT="1",
            SHARD_IDS="0",
            LAVALINK_URL=self.node.url,
            LAVALINK_PASSWORD=self.node.password,
        )

    def replies(self) -> list[str]:
        bot_id = str(self.discord.world.bot_id)
        return [
            m["content"]
            for m in self.discord.world.messages.get(self.text_id, {}).values()
            if m["author"]["id"] == bot_id
        ]

    async def say(self, content: str, expect: str, timeout: float = 15.0) -> str:
        before = len(self.replies())
        self.discord.send_message(self.text_id, self.user, content)
        await self.discord.wait_for(
            lambda: any(expect in r for r in self.replies()[before:]), timeout=timeout
        )
        return next(r for r in self.replies()[before:] if expect in r)

    async def wait_for(
        self, predicate: typing.Callable[[], typing.Any], timeout: float = 15.0
    ) -> None:
        await self.discord.wait_for(predicate, timeout=timeout)

    def playing(self) -> str | None:
        player = self.node.player(self.guild_id)
        return None if player is None or player.info is None else player.info.title


@pytest.fixture
def scene(stack: Stack, lavalink: lavalink_emulator.LavalinkEmulator) -> Scene:
    made = Scene(stack, lavalink)
    lavalink.add_track("Song One", 3_000)
    lavalink.add_track("Song Two", 3_000)
    lavalink.add_track("Long Song", 120_000)
    return made


async def test_play_joins_hands_the_voice_to_lavalink_and_plays(scene: Scene) -> None:
    discord = scene.discord
    async with scene.workers(2) as workers, scene.gateway() as gateway:
        await scene.wait_for(lambda: discord.connected_shards() == [0])
        assert "Join a voice channel first" in await scene.say("!play long song", "Join")
        discord.join_voice(scene.guild_id, scene.user, scene.voice_id)
        reply = await scene.say("!play long song", "Playing")
        assert "Long Song" in reply
        # op 4 went through the gateway; Discord's voice events went to Lavalink unchanged.
        bot_state = discord.world.voice_states[scene.guild_id][discord.world.bot_id]
        assert bot_state["channel_id"] == str(scene.voice_id)
        server = discord.gateway.voice_servers[scene.guild_id]
        player = scene.node.player(scene.guild_id)
        assert player is not None
        assert player.voice == {
            "token": server["token"],
            "endpoint": server["endpoint"],
            "sessionId": bot_state["session_id"],
            "channelId": str(scene.voice_id),
        }
        assert player.session.session_id in gateway.voice.sessions.values()
        assert scene.playing() == "Long Song"
        # TrackStartEvent came back through the gateway to a worker, which announced it.
        await scene.wait_for(lambda: any("Now playing **Long Song**" in r for r in scene.replies()))
        # Controls from the same channel.
        assert "Paused" in await scene.say("!pause", "Paused")
        assert player.paused
        assert "Volume 50" in await scene.say("!volume 50", "Volume")
        assert player.volume == 50
        assert "at most 200" in await scene.say("!volume 500", "200")
        assert "Resumed" in await scene.say("!resume", "Resumed")
        # Seek and filters, from any replica's bot.voice.
        remote = workers[1].bot.voice.player(scene.guild_id)
        await remote.seek(90_000)
        assert player.position >= 90_000
        await remote.set_filters({"timescale": {"speed": 1.2, "pitch": 1.0, "rate": 1.0}})
        assert player.filters == {"timescale": {"speed": 1.2, "pitch": 1.0, "rate": 1.0}}
        record = await remote.record()
        assert record is not None
        assert record.filters == player.filters
        now = await scene.say("!nowplaying", "Now playing")
        assert "Long Song" in now
        # The same commands as slash commands: /play queues behind what plays.
        slash = discord.send_interaction(
            scene.text_id, scene.user, "play", [{"name": "query", "type": 3, "value": "song two"}]
        )
        await scene.wait_for(lambda: slash.response is not None)
        assert slash.response is not None
        assert "Queued **Song Two** (0:03) at position 1" in slash.response["data"]["content"]
        # Discord moves the call to another voice server: Lavalink is given the new one.
        moved = discord.move_voice_server(scene.guild_id)
        assert moved is not None
        await scene.wait_for(lambda: player.voice["endpoint"] == moved["endpoint"])
        assert player.voice["token"] == moved["token"]


async def test_the_queue_advances_on_another_replica(scene: Scene) -> None:
    discord = scene.discord
    scene.node.add_track("One Minute", 60_000)  # sought to its end once the first is gone
    discord.join_voice(scene.guild_id, scene.user, scene.voice_id)
    async with scene.gateway() as gateway:
        await scene.wait_for(lambda: discord.connected_shards() == [0])
        async with scene.workers(1) as [first]:
            # The gateway learns what the new replica listens to (selective forwarding).
            await scene.wait_for(lambda: "MESSAGE_CREATE" in (gateway.publisher.interests or ()))
            await scene.say("!play one minute", "Playing")
            assert "position 1" in await scene.say("!play song two", "Queued")
            queue = await scene.say("!queue", "Page 1/1")
            assert "1. **Song Two**" in queue
        # The replica that queued it is gone; another takes the track's end and plays on.
        async with scene.workers(1) as [second]:
            assert scene.playing() == "One Minute"
            await second.bot.voice.player(scene.guild_id).seek(59_500)
            await scene.wait_for(lambda: scene.playing() == "Song Two", timeout=20)
            consumer = second.consumer
            assert consumer is not None
            # Lavalink plays the next track from inside the handler; it counts once it returns.
            await scene.wait_for(lambda: consumer.stats.handled["lavalink.TrackEndEvent"] >= 1)
            await scene.wait_for(
                lambda: any("The queue is finished" in r for r in scene.replies()), timeout=20
            )
        del first


async def test_a_gateway_hand_off_keeps_the_lavalink_session_and_the_music(scene: Scene) -> None:
    discord = scene.discord
    discord.join_voice(scene.guild_id, scene.user, scene.voice_id)
    async with scene.workers(1):
        async with scene.gateway() as first:
            await scene.wait_for(lambda: discord.connected_shards() == [0])
            await scene.say("!play long song", "Playing")
            session_before = next(iter(first.voice.sessions.values()))
            await scene.wait_for(lambda: (scene.node.player(scene.guild_id) or None) is not None)
        # The old gateway stopped (SIGTERM path); the player plays on in the paused session.
        player = scene.node.player(scene.guild_id)
        assert player is not None
        position_at_stop = player.position
        assert scene.node.live_sessions() == []
        async with scene.gateway() as second:
            await scene.wait_for(lambda: discord.connected_shards() == [0])
            assert second.voice is not None
            assert list(second.voice.sessions.values()) == [session_before]
            assert scene.node.resumes == 1
            assert scene.node.player(scene.guild_id) is player  # the same player, never rebuilt
            assert player.position > position_at_stop
            assert not any(
                method == "DELETE" for method, _, _ in scene.node.requests
            )  # nothing was torn down
            # And the new gateway carries the player's events: commands still work.
            assert "Paused" in await scene.say("!pause", "Paused")


async def test_a_dead_gateways_players_are_rebuilt_by_a_live_one(scene: Scene) -> None:
    discord = scene.discord
    guild = discord.add_guild("g2", shard=(0, 2))  # on the shard the doomed gateway holds
    guild_id = int(guild["id"])
    voice_id = int(discord.add_voice_channel(guild_id)["id"])
    text_id = int(discord.channels_of(guild_id)[0]["id"])
    discord.add_member(guild_id, scene.user, announce=False)
    discord.join_voice(guild_id, scene.user, voice_id)
    stack = scene.stack
    env = {"SHARD_COUNT": "2", "LAVALINK_URL": scene.node.url}
    async with (
        scene.workers(1),
        stack.gateway(SHARD_IDS="0", LAVALINK_PASSWORD=scene.node.password, **env) as doomed,
        stack.gateway(SHARD_IDS="1", LAVALINK_PASSWORD=scene.node.password, **env) as survivor,
    ):
        await scene.wait_for(lambda: discord.connected_shards() == [0, 1])
        before = len(discord.world.messages[text_id])
        discord.send_message(text_id, scene.user, "!play long song")
        await scene.wait_for(lambda: scene.node.player(guild_id) is not None)
        await scene.wait_for(lambda: len(discord.world.messages[text_id]) > before + 1)
        player = scene.node.player(guild_id)
        assert player is not None
        assert player.session.session_id in doomed.voice.sessions.values()
        # The doomed gateway dies: its Lavalink socket drops (the session waits, resumable),
        # and its heartbeat stops. Nobody will resume it: the survivor rebuilds its players.
        assert doomed.voice is not None
        await doomed.voice.client.close()
        await doomed._tasks.stop_loops()
        await stack.redis.delete(stack.keys.gateway_status(doomed.gateway_id))
        position = player.position
        assert survivor.voice is not None
        alive = scene.node.sessions[next(iter(survivor.voice.sessions.values()))]
        await scene.wait_for(lambda: guild_id in alive.players, timeout=10)
        rebuilt = alive.players[guild_id]
        assert rebuilt.info is not None
        assert rebuilt.info.title == "Long Song"
        assert rebuilt.position >= position
        assert rebuilt.voice == player.voice


async def test_a_lavalink_restart_recreates_the_player_where_it_was(scene: Scene) -> None:
    discord = scene.discord
    discord.join_voice(scene.guild_id, scene.user, scene.voice_id)
    async with scene.workers(1), scene.gateway() as gateway:
        await scene.wait_for(lambda: discord.connected_shards() == [0])
        await scene.say("!play long song", "Playing")
        old_session = next(iter(gateway.voice.sessions.values()))
        await scene.wait_for(lambda: (scene.node.player(scene.guild_id) or None) is not None)
        await scene.wait_for(lambda: scene.node.player(scene.guild_id).position > 1_000)  # type: ignore[union-attr]
        before = scene.node.player(scene.guild_id).position  # type: ignore[union-attr]
        restarted_at = time.monotonic()
        await scene.node.restart(downtime=0.3)
        await scene.wait_for(lambda: scene.playing() == "Long Song", timeout=20)
        recovered = time.monotonic() - restarted_at
        player = scene.node.player(scene.guild_id)
        assert player is not None
        assert player.session.session_id != old_session
        assert player.position >= before  # recreated at its position, not from the start
        assert player.voice["channelId"] == str(scene.voice_id)
        assert recovered < 10


async def test_the_bot_leaves_when_alone_and_commands_explain_themselves(scene: Scene) -> None:
    discord = scene.discord
    other_voice = int(discord.add_voice_channel(scene.guild_id, "Other")["id"])
    async with scene.workers(1), scene.gateway():
        await scene.wait_for(lambda: discord.connected_shards() == [0])
        assert "not playing anything" in await scene.say("!pause", "not playing")
        discord.join_voice(scene.guild_id, scene.user, scene.voice_id)
        await scene.say("!play song one", "Playing")
        discord.join_voice(scene.guild_id, scene.user, other_voice)  # moves away: bot is alone
        await scene.wait_for(
            lambda: discord.world.bot_id not in discord.world.voice_states[scene.guild_id]
        )
        await scene.wait_for(lambda: scene.node.player(scene.guild_id) is None)
        assert "Nothing found" in await scene.say("!play zzzz", "Nothing found")


async def test_an_unreachable_voice_server_is_told_not_played_into(scene: Scene) -> None:
    discord = scene.discord
    scene.node.unreachable_endpoints.add("*")
    discord.join_voice(scene.guild_id, scene.user, scene.voice_id)
    async with scene.workers(1), scene.gateway():
        await scene.wait_for(lambda: discord.connected_shards() == [0])
        reply = await scene.say("!play long song", "voice server", timeout=25)
        assert "could not reach Discord's voice server" in reply
        await scene.wait_for(
            lambda: discord.world.bot_id not in discord.world.voice_states[scene.guild_id]
        )
        assert scene.playing() is None
        assert "Nothing is playing" in await scene.say("!nowplaying", "Nothing")


async def test_a_voice_socket_closed_by_discord_rejoins_or_says_so(scene: Scene) -> None:
    discord = scene.discord
    discord.join_voice(scene.guild_id, scene.user, scene.voice_id)
    async with scene.workers(1), scene.gateway():
        await scene.wait_for(lambda: discord.connected_shards() == [0])
        await scene.say("!play long song", "Playing")
        player = scene.node.player(scene.guild_id)
        assert player is not None
        endpoint = player.voice["endpoint"]
        scene.node.close_voice(scene.guild_id, 4006)  # session no longer valid
        await scene.wait_for(lambda: any("reconnecting" in r for r in scene.replies()))
        # The bot asked Discord again (op 4): a new voice server, handed to Lavalink.
        await scene.wait_for(lambda: player.voice["endpoint"] != endpoint and player.connected)
        assert "Now playing **Long Song**" in await scene.say("!nowplaying", "Now playing")
        # Now every voice server is unreachable: the player never connects again, and the
        # bot does not claim to play.
        scene.node.unreachable_endpoints.add("*")
        scene.node.close_voice(scene.guild_id, 4006)
        await scene.wait_for(lambda: player.voice["endpoint"] != endpoint)
        reply = await scene.say("!nowplaying", "voice connection")
        assert "lost the voice connection" in reply
        assert "Now playing" not in reply
        # A third close is retried; a fourth within the minute gives up: leave, and say so.
        scene.node.close_voice(scene.guild_id, 4006)
        await scene.wait_for(lambda: sum("connection lost" in r for r in scene.replies()) == 3)
        scene.node.close_voice(scene.guild_id, 4006)
        await scene.wait_for(lambda: any("and left" in r for r in scene.replies()))
        await scene.wait_for(lambda: scene.node.player(scene.guild_id) is None)
        assert discord.world.bot_id not in discord.world.voice_states[scene.guild_id]


async def test_a_stuck_track_is_skipped_and_announced(scene: Scene) -> None:
    discord = scene.discord
    scene.node.stuck_threshold_ms = 300
    scene.node.add_track("Stuck Song", 60_000, identifier="stuck1")
    discord.join_voice(scene.guild_id, scene.user, scene.voice_id)
    async with scene.workers(1), scene.gateway():
        await scene.wait_for(lambda: discord.connected_shards() == [0])
        await scene.say("!play stuck song", "Playing")
        await scene.say("!play long song", "Queued")
        await scene.wait_for(lambda: any("got stuck" in r for r in scene.replies()))
        announced = next(r for r in scene.replies() if "got stuck" in r)
        assert "Stuck Song" in announced
        assert "playing **Long Song**" in announced
        await scene.wait_for(lambda: scene.playing() == "Long Song")


@pytest.mark.skipif(not os.environ.get("LAVALINK_URL"), reason="LAVALINK_URL not set")
async def test_a_real_lavalink_node_answers_as_the_emulator_does() -> None:
    from shared import voice  # noqa: PLC0415 - only with a real node

    settings = config.LavalinkSettings(
        urls=(os.environ["LAVALINK_URL"],),
        password=config.Secret(os.environ.get("LAVALINK_PASSWORD", "youshallnotpass")),
    )
    rest = voice.LavalinkRest(settings)
    await rest.start()
    try:
        # The API version header, not the server's own version: every v4 server (Lavalink,
        # NodeLink ...) sends it on every response (Lavalink's CHANGELOG 3.x "Add API version
        # header to all responses"); their version numbers differ.
        async with aiohttp.ClientSession() as http:
            answer = await http.get(
                f"{settings.urls[0]}/v4/info",
                headers={"Authorization": settings.password.reveal()},
            )
            assert answer.headers.get("Lavalink-Api-Version") == "4"
        empty = await rest.load_tracks("ytsearch:")
        assert empty["loadType"] in {"empty", "search", "error"}
        with pytest.raises(voice.LavalinkError) as missing:
            await rest.update_player(settings.urls[0], "nosuchsession", 1, {})
        assert missing.value.status == 404
    finally:
        await rest.close()
