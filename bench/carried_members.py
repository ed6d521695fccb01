"""What storing the member each event carries costs the gateway's cache writer, per event.

    .venv/bin/python -m bench.carried_members [--events 20000] [--batch 100]

Issue 23: without GUILD_PRESENCES nobody is chunked, so the writer stores the member that
MESSAGE_CREATE (partial member plus author), INTERACTION_CREATE, MESSAGE_REACTION_ADD and
TYPING_START carry. With the default resources, MESSAGE_CREATE used to write nothing (the
gateway published it without touching Redis); now each one is a member HSET, a member-id SADD
and a user HSET, pipelined with the rest of its batch. Runs the real ``CacheWriter`` against
loopback Redis on ``--events`` MESSAGE_CREATEs from ``--members`` distinct members (a member
unchanged since this writer stored it writes nothing again), in batches of
``--batch`` (the gateway writes a shard's pending dispatches as one pipeline), and prints the
wall and CPU time per event, next to the same loop with members and users off (the old path:
nothing to write).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import redis.asyncio as aioredis

from bench.cache_memory import delete
from playground.discord import world
from shared import keys
from shared.cache import resources, writer

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def run(
    redis: aioredis.Redis,
    flags: resources.CacheResource,
    events: list[dict[str, object]],
    batch: int,
) -> tuple[float, float]:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    names = keys.RedisKeys(namespace, "main")
    cache_writer = writer.CacheWriter(names, flags, shard_count=1)
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(events), batch):
        chunk = [
            (0, "MESSAGE_CREATE", d)
            for d in events[start : start + batch]
            if cache_writer.handles("MESSAGE_CREATE")
        ]
        if chunk:
            await cache_writer.write(redis, chunk)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await delete(redis, f"{namespace}:*")
    return wall, cpu


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--members", type=int, default=2_000, help="distinct authors")
    args = parser.parse_args()
    emulated = world.World()
    guild = emulated.add_guild("bench", channels=1)
    guild_id = int(guild["id"])
    channel_id = int(emulated.guild_channels(guild_id)[0]["id"])
    role = emulated.snowflakes.next()
    members = [
        emulated.add_member(guild_id, emulated.add_user(f"user{i}"), roles=[role])
        for i in range(args.members)
    ]
    events: list[dict[str, object]] = [
        emulated.make_message(
            channel_id,
            members[i % len(members)]["user"],
            "hello there",
            member=members[i % len(members)],
        )
        for i in range(args.events)
    ]
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        old_flags = resources.DEFAULT & ~(
            resources.CacheResource.MEMBERS | resources.CacheResource.USERS
        )
        rows = [
            ("default resources, members stored (issue 23)", resources.DEFAULT),
            ("members and users off (nothing to write: the old path)", old_flags),
        ]
        print(
            f"{args.events:,} MESSAGE_CREATE from {args.members:,} members, "
            f"batches of {args.batch}, loopback Redis"
        )
        for name, flags in rows:
            wall, cpu = await run(redis, flags, events, args.batch)
            print(
                f"{name}: {wall / args.events * 1e6:.1f} us wall, "
                f"{cpu / args.events * 1e6:.1f} us CPU per event"
            )
    finally:
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
