"""The Discord emulator in a process of its own, driven over stdin, for benchmarks.

Prints ``ready <api_url> <token>``; then reads commands: ``wait-shards N`` (answers
``connected FIRST_IDENTIFY NOW``, wall-clock times), ``blast COUNT BYTES`` (dispatches COUNT MESSAGE_CREATE of about BYTES each to
shard 0 as fast as the socket takes them; answers ``sent SECONDS``), ``paced COUNT RATE BYTES``
(COUNT MESSAGE_CREATE at RATE per second, each message's content starting with the wall-clock
time it was dispatched, for latency measurements; answers ``sent SECONDS``), ``roundtrip
COUNT`` (COUNT users' ``!rt N`` messages one after another, at most 20 a second, each in its
own channel, waiting for the bot's ``rt N`` reply through REST; answers ``rt`` and the round
trips in ms),
``quit``.
"""

from __future__ import annotations

import asyncio
import sys
import time

from playground.discord import emulator, gateway


async def blast(discord: emulator.DiscordEmulator, count: int, size: int) -> float:
    guild_id = next(iter(discord.world.guilds))
    channel = discord.channels_of(guild_id)[0]
    author = discord.add_user("bench-user")
    template = discord.world.make_message(int(channel["id"]), author, "")
    padding = max(size - len(str(template)), 10)
    content = "x" * padding
    session = discord.gateway.shards[0]
    started = time.perf_counter()
    for index in range(count):
        message = dict(template)
        message["id"] = str(int(template["id"]) + index)
        message["content"] = f"{index} {content}"
        discord.gateway.dispatch("MESSAGE_CREATE", message, guild_id=guild_id)
        connection = session.connection
        if connection is not None and connection.backlog > 2000:
            while connection.backlog > 500:
                await asyncio.sleep(0.001)
    connection = session.connection
    while connection is not None and connection.backlog:
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


async def paced(discord: emulator.DiscordEmulator, count: int, rate: float, size: int) -> float:
    """Dispatch at a fixed rate; a late tick sends what is due at once (no coordinated omission)."""
    guild_id = next(iter(discord.world.guilds))
    channel = discord.channels_of(guild_id)[0]
    author = discord.add_user("bench-user")
    template = discord.world.make_message(int(channel["id"]), author, "")
    padding = "x" * max(size - len(str(template)) - 20, 10)
    started = time.perf_counter()
    for index in range(count):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        message = dict(template)
        message["id"] = str(int(template["id"]) + index)
        message["content"] = f"{time.time():.6f} {index} {padding}"
        discord.gateway.dispatch("MESSAGE_CREATE", message, guild_id=guild_id)
    return time.perf_counter() - started


async def roundtrip(discord: emulator.DiscordEmulator, count: int) -> list[float]:
    """Message in, REST reply seen: one at a time, each in its own channel (no rate limit)."""
    guild_id = next(iter(discord.world.guilds))
    author = discord.add_user("bench-user")
    bot_id = str(discord.world.bot_id)
    channels = [int(c["id"]) for c in discord.channels_of(guild_id)]
    took = []
    for index in range(count):
        channel = channels[index % len(channels)]
        before = len(discord.world.messages[channel])
        started = time.perf_counter()
        discord.send_message(channel, author, f"!rt {index}")
        expected = f"rt {index}"
        while not any(
            m["author"]["id"] == bot_id and m["content"] == expected
            for m in list(discord.world.messages[channel].values())[before:]
        ):
            await asyncio.sleep(0.0005)
        took.append((time.perf_counter() - started) * 1000)
        # 20 a second: under Discord's global limit (50/s), which would otherwise be measured.
        await asyncio.sleep(max(0.0, 0.05 - (time.perf_counter() - started)))
    return took


async def main() -> None:
    # Arguments, each optional: channels in the guild, shards, max_concurrency.
    given = [int(a) for a in sys.argv[1:4]]
    channels, shards, concurrency = given + [1, 1, 16][len(given) :]
    options = gateway.GatewayOptions(max_concurrency=concurrency, recommended_shards=shards)
    async with emulator.DiscordEmulator(gateway_options=options) as discord:
        discord.add_guild("bench", shard=(0, shards), channels=channels)
        print(f"ready {discord.api_url} {discord.token}", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                return
            if line[0] == "wait-shards":
                wanted = int(line[1])
                await discord.wait_for(
                    lambda wanted=wanted: len(discord.connected_shards()) >= wanted, timeout=60
                )
                accepted = [r.at for r in discord.records.identifies if r.accepted]
                first = min(accepted, default=time.time())
                # The wall-clock time of the first accepted IDENTIFY, and of now (all READY).
                print(f"connected {first:.3f} {time.time():.3f}", flush=True)
            elif line[0] == "blast":
                seconds = await blast(discord, int(line[1]), int(line[2]))
                print(f"sent {seconds:.3f}", flush=True)
            elif line[0] == "roundtrip":
                took = await roundtrip(discord, int(line[1]))
                print("rt " + " ".join(f"{t:.3f}" for t in took), flush=True)
            elif line[0] == "paced":
                seconds = await paced(discord, int(line[1]), float(line[2]), int(line[3]))
                print(f"sent {seconds:.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
