"""The built-in ``music`` plugin: play, pause, resume, skip, stop, queue, nowplaying, volume,
loop, shuffle, leave (``WORKER_PLUGINS=worker.plugins.music``, with ``LAVALINK_URL``).

Everything a guild's music is lives in Redis (the queue, the loop mode, where to announce) or
in the player record, so any replica answers any command, and a track's end is handled by
whichever replica takes the event. To control the music a user must be in the bot's voice
channel; the bot leaves when nobody else is left in it.
"""

from __future__ import annotations

import contextlib
import random
import time
import typing

import hikari
import orjson

from shared import redis_client
from worker.commands import option
from worker.voice import LavalinkEvent, VoiceUnavailableError

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys as keys_module
    from worker import bot as bot_module
    from worker.commands import Context

__all__: typing.Sequence[str] = ("setup",)

PAGE_SIZE: typing.Final[int] = 10
LOOP_MODES: typing.Final[tuple[str, ...]] = ("off", "track", "queue")
#: Times in a row the bot asks Discord for a new voice connection after it was closed.
MAX_REJOINS: typing.Final[int] = 3
#: Seconds over which those rejoins count.
REJOIN_WINDOW: typing.Final[float] = 60.0
Track = dict[str, typing.Any]


def _duration(ms: int) -> str:
    seconds = max(ms, 0) // 1000
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02}:{rest % 60:02}" if hours else f"{rest // 60}:{rest % 60:02}"


def _title(track: Track) -> str:
    info = track.get("info", {})
    return f"**{info.get('title', '?')}** ({_duration(int(info.get('length') or 0))})"


class Music:
    """One guild's music state, in Redis."""

    def __init__(self, bot: bot_module.Bot, guild_id: int) -> None:
        self.bot = bot
        self.guild_id = guild_id
        self.redis: aioredis.Redis = bot.redis
        self.keys: keys_module.RedisKeys = bot.keys
        self.player = bot.voice.player(guild_id)

    async def enqueue(self, tracks: list[Track]) -> int:
        """Append; returns the queue's new length."""
        return int(
            await self.redis.rpush(self.keys.music_queue(self.guild_id), *map(orjson.dumps, tracks))
        )

    async def queue(self) -> list[Track]:
        return [
            orjson.loads(t)
            for t in await self.redis.lrange(self.keys.music_queue(self.guild_id), 0, -1)
        ]

    async def loop_mode(self) -> str:
        mode = await self.redis.hget(self.keys.music_state(self.guild_id), "loop")
        return redis_client.text(mode) if mode else "off"

    async def set_state(self, **fields: str) -> None:
        mapping: dict[typing.Any, typing.Any] = dict(fields)
        await self.redis.hset(self.keys.music_state(self.guild_id), mapping=mapping)

    async def rejoins(self) -> int:
        """Count one more rejoin; the count restarts once REJOIN_WINDOW has passed since the
        first of the run (no listener on every playerUpdate just to reset it)."""
        key = self.keys.music_state(self.guild_id)
        raw = await self.redis.hget(key, "rejoins")
        now = time.time()
        count, first = 0, now
        if raw:
            with contextlib.suppress(ValueError):
                text_count, _, text_first = redis_client.text(raw).partition(":")
                count, first = int(text_count), float(text_first)
        if now - first > REJOIN_WINDOW:
            count, first = 0, now
        await self.redis.hset(key, "rejoins", f"{count + 1}:{first}")
        return count + 1

    async def clear(self) -> None:
        await self.redis.delete(
            self.keys.music_queue(self.guild_id), self.keys.music_state(self.guild_id)
        )

    async def advance(self, ended: Track | None) -> Track | None:
        """Start what comes after ``ended`` (loop modes apply); None when the queue is done."""
        mode = await self.loop_mode()
        if ended is not None and mode == "track":
            following: Track | None = ended
        else:
            if ended is not None and mode == "queue":
                await self.enqueue([ended])
            raw = await self.redis.lpop(self.keys.music_queue(self.guild_id))
            following = orjson.loads(typing.cast("bytes", raw)) if raw else None
        if following is None:
            return None
        await self.player.play(following)
        return following

    async def announce(self, content: str) -> None:
        channel = await self.redis.hget(self.keys.music_state(self.guild_id), "channel")
        if channel:
            await self.bot.rest.create_message(int(channel), content)


async def _require_listener(
    bot: bot_module.Bot, ctx: Context, *, joining: bool = False
) -> Music | None:
    """The caller must be in the bot's voice channel (or, to start, in any voice channel)."""
    if ctx.guild_id is None:
        await ctx.respond("Music works in servers only.")
        return None
    if not bot.voice.available:
        await ctx.respond("Music is not set up on this bot.")
        return None
    music = Music(bot, int(ctx.guild_id))
    where = await bot.cache.voice_channel_members(int(ctx.guild_id))
    theirs = where.get(int(ctx.author.id))
    record = await music.player.record()
    ours = int(record.channel_id) if record is not None and record.channel_id else None
    if ours is None and not joining:
        await ctx.respond("I am not playing anything here.")
        return None
    if theirs is None:
        await ctx.respond("Join a voice channel first.")
        return None
    if ours is not None and theirs != ours:
        await ctx.respond(f"I am playing in <#{ours}>; join it to control the music.")
        return None
    return music


def setup(bot: bot_module.Bot) -> None:
    _playing(bot)
    _now(bot)
    _voice_failures(bot)
    _controls(bot)
    _settings(bot)
    _queue(bot)
    _events(bot)


def _playing(bot: bot_module.Bot) -> None:
    @bot.command(description="Plays a song (a search or a URL), or queues it", guild_only=True)
    async def play(ctx: Context, query: str = option("a search, or a link")) -> None:
        music = await _require_listener(bot, ctx, joining=True)
        if music is None:
            return
        identifier = query if query.startswith(("http://", "https://")) else f"ytsearch:{query}"
        try:
            result = await bot.voice.load(identifier)
            found: list[Track] = []
            kind = result.get("loadType")
            if kind == "track":
                found = [result["data"]]
            elif kind == "search":
                found = result["data"][:1]
            elif kind == "playlist":
                found = list(result["data"]["tracks"])
            elif kind == "error":
                await ctx.respond(f"I could not load that: {result['data'].get('message')}")
                return
            if not found:
                await ctx.respond(f"Nothing found for `{query}`.")
                return
            await music.set_state(channel=str(ctx.channel_id))
            record = await music.player.record()
            if record is None or not record.session:
                where = await bot.cache.voice_channel_members(int(ctx.guild_id))  # type: ignore[arg-type]
                record = await music.player.connect(where[int(ctx.author.id)])
            if record.track is None:
                first, rest = found[0], found[1:]
                await music.player.play(first)
                if rest:
                    await music.enqueue(rest)
                more = f" and queued {len(rest)} more" if rest else ""
                await ctx.respond(f"Playing {_title(first)}{more}.")
            else:
                length = await music.enqueue(found)
                what = _title(found[0]) if len(found) == 1 else f"{len(found)} tracks"
                await ctx.respond(f"Queued {what} at position {length - len(found) + 1}.")
        except VoiceUnavailableError as exc:
            await ctx.respond(str(exc))


def _now(bot: bot_module.Bot) -> None:
    @bot.command(description="Shows what is playing", guild_only=True)
    async def nowplaying(ctx: Context) -> None:
        record = await bot.voice.record(int(ctx.guild_id)) if ctx.guild_id else None
        if record is None or record.track is None:
            await ctx.respond("Nothing is playing.")
            return
        if not record.connected:
            # Never claim to play while the voice connection is down (a closed socket).
            await ctx.respond(
                f"{_title(record.track)} is stopped: I lost the voice connection and am "
                "reconnecting."
            )
            return
        length = int(record.track["info"].get("length") or 0)
        state = " (paused)" if record.paused else ""
        position = _duration(record.position_now())
        await ctx.respond(
            f"Now playing {_title(record.track)}: {position} / {_duration(length)}{state}"
        )


def _controls(bot: bot_module.Bot) -> None:
    @bot.command(description="Pauses the music", guild_only=True)
    async def pause(ctx: Context) -> None:
        music = await _require_listener(bot, ctx)
        if music is not None:
            await music.player.pause()
            await ctx.respond("Paused.")

    @bot.command(description="Resumes the music", guild_only=True)
    async def resume(ctx: Context) -> None:
        music = await _require_listener(bot, ctx)
        if music is not None:
            await music.player.resume()
            await ctx.respond("Resumed.")

    @bot.command(description="Skips to the next song", guild_only=True)
    async def skip(ctx: Context) -> None:
        music = await _require_listener(bot, ctx)
        if music is None:
            return
        following = await music.advance(None)
        if following is None:
            await music.player.stop()
            await ctx.respond("Skipped; the queue is empty.")
        else:
            await ctx.respond(f"Skipped. Playing {_title(following)}.")

    @bot.command(description="Stops the music and clears the queue", guild_only=True)
    async def stop(ctx: Context) -> None:
        music = await _require_listener(bot, ctx)
        if music is not None:
            await bot.redis.delete(bot.keys.music_queue(music.guild_id))
            await music.player.stop()
            await ctx.respond("Stopped, and cleared the queue.")


def _settings(bot: bot_module.Bot) -> None:
    @bot.command(description="Sets the volume (0-200 %)", guild_only=True)
    async def volume(ctx: Context, level: int = option("percent", min=0, max=200)) -> None:
        music = await _require_listener(bot, ctx)
        if music is not None:
            await music.player.set_volume(level)
            await ctx.respond(f"Volume {level} %.")

    @bot.command(description="Repeats the song, the queue, or nothing", guild_only=True)
    async def loop(ctx: Context, mode: str = option("what to repeat", choices=LOOP_MODES)) -> None:
        music = await _require_listener(bot, ctx)
        if music is not None:
            await music.set_state(loop=mode)
            await ctx.respond(f"Loop: {mode}.")

    @bot.command(description="Leaves the voice channel", guild_only=True)
    async def leave(ctx: Context) -> None:
        music = await _require_listener(bot, ctx)
        if music is not None:
            await music.clear()
            await music.player.disconnect()
            await ctx.respond("Bye!")


def _queue(bot: bot_module.Bot) -> None:
    @bot.command("queue", description="Lists the queue", guild_only=True)
    async def queue_(ctx: Context, page: int = option("page", 1, min=1)) -> None:
        if ctx.guild_id is None:
            return
        music = Music(bot, int(ctx.guild_id))
        tracks = await music.queue()
        pages = max(1, -(-len(tracks) // PAGE_SIZE))
        if page > pages:
            await ctx.respond(f"The queue has {pages} page{'s' if pages > 1 else ''}.")
            return
        start = (page - 1) * PAGE_SIZE
        lines = [
            f"{start + i + 1}. {_title(t)}" for i, t in enumerate(tracks[start : start + PAGE_SIZE])
        ]
        record = await bot.voice.record(int(ctx.guild_id))
        now = f"Now: {_title(record.track)}\n" if record is not None and record.track else ""
        body = "\n".join(lines) if lines else "The queue is empty."
        await ctx.respond(f"{now}{body}\nPage {page}/{pages} · loop {await music.loop_mode()}")

    @bot.command(description="Shuffles the queue", guild_only=True)
    async def shuffle(ctx: Context) -> None:
        music = await _require_listener(bot, ctx)
        if music is None:
            return
        tracks = await music.queue()
        random.shuffle(tracks)
        async with music.redis.pipeline(transaction=True) as pipe:
            pipe.delete(music.keys.music_queue(music.guild_id))
            if tracks:
                pipe.rpush(music.keys.music_queue(music.guild_id), *map(orjson.dumps, tracks))
            await pipe.execute()
        await ctx.respond(f"Shuffled {len(tracks)} tracks.")


def _voice_failures(bot: bot_module.Bot) -> None:
    @bot.voice.listen("TrackStuckEvent")
    async def on_track_stuck(event: LavalinkEvent) -> None:
        """Lavalink keeps a stuck track (no audio for ``thresholdMs``): skip it, and say so."""
        music = Music(bot, event.guild_id)
        record = await music.player.record()
        stuck = (event.track or {}).get("encoded")
        if record is None or record.track is None or record.track.get("encoded") != stuck:
            return  # already replaced (a redelivery, or a command)
        title = _title(event.track) if event.track else "The track"
        try:
            following = await music.advance(None)
            if following is None:
                await music.player.stop()
        except VoiceUnavailableError:
            following = None
        after = f"playing {_title(following)}" if following else "the queue is finished"
        await music.announce(f"{title} got stuck (no audio); skipped, {after}.")

    @bot.voice.listen("WebSocketClosedEvent")
    async def on_voice_closed(event: LavalinkEvent) -> None:
        """Discord closed the voice socket: ask for a new voice connection a few times, then
        leave and say so. 4014 (disconnected: kicked, channel deleted) is not retried: the
        bot's voice state says where it is now."""
        code = int(event.data.get("code") or 0)
        music = Music(bot, event.guild_id)
        if code == 4014:
            await music.announce("I was disconnected from the voice channel.")
            return
        if await music.rejoins() <= MAX_REJOINS and await music.player.rejoin():
            await music.announce(f"Voice connection lost ({code}); reconnecting.")
            return
        # Said first: clearing forgets the channel to announce in.
        await music.announce(f"I lost the voice connection ({code}) and left; `play` to restart.")
        await music.clear()
        await music.player.disconnect()


def _events(bot: bot_module.Bot) -> None:
    @bot.voice.listen("TrackEndEvent")
    async def on_track_end(event: LavalinkEvent) -> None:
        if not event.may_start_next:
            return  # replaced or stopped: a command already decided what comes next
        music = Music(bot, event.guild_id)
        record = await music.player.record()
        if record is not None and record.track is not None:
            # The gateway clears the track before publishing its end: one is set again, so
            # this end was already handled (a redelivery) or a command started another.
            return
        try:
            following = await music.advance(event.track)
        except VoiceUnavailableError:
            return
        if following is None:
            await music.announce("The queue is finished.")

    @bot.voice.listen("TrackStartEvent")
    async def on_track_start(event: LavalinkEvent) -> None:
        if event.track is not None:
            await Music(bot, event.guild_id).announce(f"Now playing {_title(event.track)}.")

    @bot.voice.listen("TrackExceptionEvent")
    async def on_track_exception(event: LavalinkEvent) -> None:
        message = (event.data.get("exception") or {}).get("message") or "unknown error"
        await Music(bot, event.guild_id).announce(f"I could not play that track: {message}")

    @bot.listen(hikari.VoiceStateUpdateEvent)
    async def on_voice_state(event: hikari.VoiceStateUpdateEvent) -> None:
        """Leave when nobody but bots is left in the bot's channel."""
        if not bot.voice.available:
            return
        record = await bot.voice.record(int(event.guild_id))
        if record is None or not record.channel_id:
            return
        ours = int(record.channel_id)
        where = await bot.cache.voice_channel_members(int(event.guild_id))
        listening = [user for user, channel in where.items() if channel == ours]
        humans = [u for u in listening if not await _is_bot(bot, int(event.guild_id), u)]
        if not humans:
            music = Music(bot, int(event.guild_id))
            await music.clear()
            await music.player.disconnect()


async def _is_bot(bot: bot_module.Bot, guild_id: int, user_id: int) -> bool:
    member = await bot.cache.get_member(guild_id, user_id)
    return member is not None and member.is_bot
