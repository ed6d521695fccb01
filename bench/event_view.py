"""What hikari's event helpers cost a worker: the per-message snapshot read, and its use.

    .venv/bin/python -m bench.event_view [--events 10000] [--batch 50]

A private Redis (started here, so that its command counts are this run's alone) holds a cached
guild (GUILD_CREATE written by the gateway's cache writer); a worker group's queue is filled
with MESSAGE_CREATE envelopes of that guild (the author's member carried, one user and one role
mentioned). One worker replica drains it, in the same run:

* **baseline**: the snapshot read off (``bot.app.prefetch = False``), no-op listener;
* **view, no-op listener**: the read done, nothing asks it anything;
* **view, helpers used**: the listener calls ``event.get_guild()``, ``get_member()``,
  ``get_channel()`` and ``member.get_roles()`` (models built from the snapshot);

each on one-event messages and on ``--batch``-event messages. Prints events/s, CPU seconds per
1,000 events, and Redis commands per event (``INFO commandstats``: calls from clients and from
scripts alike) and Redis round trips per event (requests this process sent: a command, a
script call or a pipeline each; the worker's health and status writes included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import typing
import uuid

import hikari
import redis.asyncio as aioredis

from bench import cleanup
from bench import worker_throughput as throughput
from playground.discord import world
from shared import config, keys, lifecycle, redis_client, topology
from shared.cache import resources, writer
from worker import app, event_view
from worker import bot as bot_module

AMQP_URL = throughput.AMQP_URL


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def private_redis() -> typing.Iterator[str]:
    directory = pathlib.Path(tempfile.mkdtemp(prefix="bench-redis-"))
    port = free_port()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    subprocess.run(
        [
            server, "--bind", "127.0.0.1", "--port", str(port), "--daemonize", "yes",
            "--pidfile", str(directory / "redis.pid"), "--dir", str(directory),
            "--logfile", str(directory / "redis.log"), "--save", "", "--appendonly", "no",
        ],
        check=True,
    )  # fmt: skip
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        pid = directory / "redis.pid"
        for _ in range(50):
            if pid.exists():
                break
            time.sleep(0.1)
        if pid.exists():
            os.kill(int(pid.read_text()), 15)
            for _ in range(50):  # it removes its pid file on the way out
                if not pid.exists():
                    break
                time.sleep(0.1)
        shutil.rmtree(directory, ignore_errors=True)


class Population(typing.NamedTuple):
    guild: dict[str, typing.Any]
    members: list[dict[str, typing.Any]]
    envelopes: list[dict[str, typing.Any]]


def population(count: int) -> Population:
    discord = world.World()
    guild = discord.add_guild("bench", channels=3)
    guild_id = int(guild["id"])
    roles = []
    for index in range(10):
        role = {
            "id": str(discord.snowflakes.next()), "name": f"role-{index}", "color": 0,
            "hoist": False, "icon": None, "unicode_emoji": None, "position": index + 1,
            "permissions": "0", "managed": False, "mentionable": True, "flags": 0,
        }  # fmt: skip
        discord.guilds[guild_id]["roles"].append(role)
        roles.append(int(role["id"]))
    author = discord.add_user("author")
    other = discord.add_user("other")
    member = discord.add_member(guild_id, author, roles=roles[:3])
    mentioned = discord.add_member(guild_id, other, roles=roles[3:4])
    channel_id = int(discord.guild_channels(guild_id)[0]["id"])
    template = discord.make_message(channel_id, author, "x" * 300, member=member)
    template["mentions"] = [other]
    template["mention_roles"] = [str(roles[0])]
    session = uuid.uuid4().hex
    items = [
        {
            "v": 1, "pool": "main", "gateway": "bench", "reply_to": "bench", "shard": [0, 1],
            "session": session, "seq": i + 1, "t": "MESSAGE_CREATE",
            "d": {**template, "id": str(int(template["id"]) + i)}, "ts": time.time(),
        }
        for i in range(count)
    ]  # fmt: skip
    return Population(discord.guild_create_payload(guild_id), [member, mentioned], items)


async def write_cache(redis_url: str, namespace: str, people: Population) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    cache = writer.CacheWriter(keys.RedisKeys(namespace, "main"), resources.DEFAULT, shard_count=1)
    guild_id = people.guild["id"]
    await cache.write(redis, [(0, "GUILD_CREATE", people.guild)])
    await cache.write(
        redis, [(0, "GUILD_MEMBER_ADD", {**m, "guild_id": guild_id}) for m in people.members]
    )
    await redis.aclose()


class RoundTrips:
    """Requests this process sent to Redis: a command, a script call or a pipeline each."""

    count = 0

    @classmethod
    def install(cls) -> None:
        command = redis_client.GuardedRedis.execute_command
        pipeline = redis_client.GuardedPipeline.execute

        async def counted_command(
            self: typing.Any, *args: typing.Any, **kw: typing.Any
        ) -> typing.Any:
            cls.count += 1
            return await command(self, *args, **kw)

        async def counted_pipeline(self: typing.Any, raise_on_error: bool = True) -> typing.Any:
            cls.count += 1
            return await pipeline(self, raise_on_error)

        redis_client.GuardedRedis.execute_command = counted_command  # type: ignore[method-assign]
        redis_client.GuardedPipeline.execute = counted_pipeline  # type: ignore[method-assign]


async def redis_calls(redis_url: str) -> int:
    redis = aioredis.Redis.from_url(redis_url)
    stats = await redis.info("commandstats")
    await redis.aclose()
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def run_case(
    redis_url: str, people: Population, bodies: list[bytes], *, view: bool, use: bool
) -> tuple[float, float, float, float, float, int, int]:
    """events/s, CPU s per 1k events, Redis round trips and commands per event, snapshot
    reads per event, failed reads, events whose helpers answered None (their read failed)."""
    count = len(people.envelopes)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    names = topology.Topology(namespace)
    try:
        await write_cache(redis_url, namespace, people)
        await throughput.declare(names)
        await throughput.fill(names, bodies)
        bot = bot_module.Bot()
        done = asyncio.Event()
        handled = 0
        unanswered = 0

        @bot.listen(hikari.GuildMessageCreateEvent)
        async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
            nonlocal handled, unanswered
            if use:
                member = event.get_member()
                roles = member.get_roles() if member is not None else []
                found = event.get_guild() is not None and event.get_channel() is not None
                unanswered += not (found and len(roles) == 4)  # three roles and @everyone
            handled += 1
            if handled == count:
                done.set()

        settings = config.WorkerSettings.from_env(
            {
                "DISCORD_TOKEN": "bench.token.value", "AMQP_URL": AMQP_URL, "REDIS_URL": redis_url,
                "NAMESPACE": namespace, "WORKER_GROUP": "bench", "HEALTH_PORT": "0",
                "DISCORD_API_URL": "http://127.0.0.1:9/api/v10",
            }
        )  # fmt: skip
        bot.app.prefetch = view
        replica = app.WorkerApp(settings, bot)
        reads0, trips0 = event_view.STATS.round_trips, RoundTrips.count
        failed0 = event_view.STATS.failures
        calls0 = await redis_calls(redis_url)
        cpu0, t0 = throughput.cpu(), time.perf_counter()
        await replica.start()
        lifecycle.settle_heap()
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed, used = time.perf_counter() - t0, throughput.cpu() - cpu0
        trips = RoundTrips.count - trips0
        calls = await redis_calls(redis_url) - calls0
        await replica.close()
        reads = event_view.STATS.round_trips - reads0
        failed = event_view.STATS.failures - failed0
        rates = (count / elapsed, used / count * 1000, trips / count, calls / count, reads / count)
        return (*rates, failed, unanswered)
    finally:
        await cleanup.cleanup(AMQP_URL, redis_url, namespace, ["bench"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    people = population(args.events)
    RoundTrips.install()
    rows = []
    with private_redis() as redis_url:
        for batch in (1, args.batch):
            bodies = throughput.encode(people.envelopes, batch)
            for label, view, use in (
                ("baseline: no snapshot read", False, False),
                ("view, no-op listener", True, False),
                ("view, helpers used", True, True),
            ):
                result = await run_case(redis_url, people, bodies, view=view, use=use)
                rows.append((f"{batch} per message, {label}", *result))
    print(
        "| case | events/s | CPU s per 1k events | Redis round trips per event"
        " | Redis commands per event | snapshot reads per event | reads failed"
        " | helpers answered None |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, rate, per_k, trips, calls, reads, failed, unanswered in rows:
        print(
            f"| {label} | {rate:,.0f} | {per_k:.3f} | {trips:.2f} | {calls:.2f} | {reads:.3f}"
            f" | {failed}"
            f" | {unanswered if label.endswith('used') else '-'} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
