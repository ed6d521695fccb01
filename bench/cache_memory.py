"""Redis memory of the shared cache per guild, member and channel, next to a naive layout.

    .venv/bin/python -m bench.cache_memory [--guilds 1000] [--members 200] [--channels 20] [--roles 10]
    .venv/bin/python -m bench.cache_memory --members-total 20000,200000,2000000 [--cluster]

Fills the cache through the real writer with a realistic population (by default 1,000
guilds, 200,000 members with their users, 20,000 channels, 10,000 roles) and, in the same run
on the same Redis, a naive layout of one JSON document per entity key (members with their user
inside). Measures every key with ``MEMORY USAGE`` and reports bytes per guild, per member
(including its user) and per channel, the overall ratio, and the reader's latency for
member-with-permissions (p50/p99 on loopback). The baseline a bot author knows: the same
GUILD_CREATEs through a hikari ``GatewayBot``'s event manager into its default in-process
cache, measured with ``tracemalloc`` (Python heap only, so an underestimate of its RSS), once
with members and once without, for bytes per member.

``--members-total`` measures bytes per member (with its user and its id in the guild's member
set) at each population given, guilds of ``--members`` members each, written through the real
writer once with the bucket layout sized to that population (``CACHE_MEMBERS``) and once with
the old fixed layout (2**16 buckets), on a private redis-server started for the run (and, with
``--redis standalone,cluster``, the default, on a private three-master Redis Cluster too, from ``tests/servers.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import typing
import uuid

import orjson
import redis.asyncio as aioredis
from hikari.impl import entity_factory

from playground.discord import world
from shared import keys
from shared.cache import reader, resources, writer

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
Json = dict[str, typing.Any]


def population(args: argparse.Namespace) -> list[Json]:
    return list(guild_payloads(args, args.guilds))


def guild_payloads(args: argparse.Namespace, guilds: int) -> typing.Iterator[Json]:
    """GUILD_CREATE payloads, made one at a time (2 million members do not fit as dicts)."""
    rng = random.Random(7)
    discord = world.World()
    for g in range(guilds):
        guild = discord.add_guild(f"guild {g}", channels=args.channels)
        guild_id = int(guild["id"])
        for r in range(args.roles - 1):
            guild["roles"].append(
                {
                    "id": str(discord.snowflakes.next()), "name": f"role {r}", "color": rng.randrange(1 << 24),
                    "hoist": False, "icon": None, "unicode_emoji": None, "position": r + 1,
                    "permissions": str(rng.randrange(1 << 40)), "managed": False,
                    "mentionable": False, "flags": 0,
                }
            )  # fmt: skip
        role_ids = [r["id"] for r in guild["roles"][1:]]
        payload = discord.guild_create_payload(guild_id)
        members = []
        for m in range(args.members):
            user = world.World._user_payload(discord.snowflakes.next(), f"user{g}-{m}")  # noqa: SLF001
            if rng.random() < 0.7:
                user["avatar"] = f"{rng.getrandbits(128):032x}"
            members.append(
                {
                    "user": user, "nick": f"nick{m}" if rng.random() < 0.2 else None,
                    "avatar": None, "roles": rng.sample(role_ids, k=min(len(role_ids), rng.choice((0, 1, 1, 2, 3)))),
                    "joined_at": world.iso_now(), "premium_since": None, "deaf": False,
                    "mute": False, "flags": 0, "pending": False,
                    "communication_disabled_until": None,
                }
            )  # fmt: skip
        payload["members"] = members
        payload["member_count"] = len(members)
        yield payload
        # Forgotten once made: the world's channel lookups scan every channel it holds.
        discord.guilds.pop(guild_id, None)
        discord.members.pop(guild_id, None)
        discord.channels.clear()


async def write_naive(redis: aioredis.Redis, prefix: str, payloads: list[Json]) -> None:
    for payload in payloads:
        guild_id = payload["id"]
        pipe = redis.pipeline(transaction=False)
        own = {k: v for k, v in payload.items() if k not in ("members", "channels", "roles")}
        pipe.set(f"{prefix}:guild:{guild_id}", orjson.dumps(own))
        for role in payload["roles"]:
            pipe.set(f"{prefix}:role:{guild_id}:{role['id']}", orjson.dumps(role))
        for channel in payload["channels"]:
            pipe.set(f"{prefix}:channel:{channel['id']}", orjson.dumps(channel))
        for member in payload["members"]:
            pipe.set(f"{prefix}:member:{guild_id}:{member['user']['id']}", orjson.dumps(member))
        await pipe.execute()


async def measure(redis: aioredis.Redis, pattern: str) -> dict[str, int]:
    """Bytes by key kind (the part after the pool prefix up to the first id)."""
    totals: dict[str, int] = {}
    batch: list[bytes] = []

    async def flush() -> None:
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(batch, await pipe.execute(), strict=True):
            parts = key.decode().split(":")
            kind = parts[2] if parts[2] != "g" else ("g:" + parts[4] if len(parts) > 4 else "g")
            totals[kind] = totals.get(kind, 0) + int(size or 0)
        batch.clear()

    async for key in redis.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 2000:
            await flush()
    if batch:
        await flush()
    return totals


async def delete(redis: aioredis.Redis, pattern: str) -> None:
    # One UNLINK per key: a cluster node refuses one UNLINK of keys in several slots.
    pipe = redis.pipeline(transaction=False)
    async for key in redis.scan_iter(match=pattern, count=5000):
        pipe.unlink(key)
        if len(pipe) >= 2000:
            await pipe.execute()
    await pipe.execute()


def gateway_bot_cache_bytes(payloads: list[Json]) -> int:
    """Python heap a hikari GatewayBot's default cache takes for these GUILD_CREATEs."""
    import gc  # noqa: PLC0415 - only for this measurement
    import tracemalloc  # noqa: PLC0415

    import hikari  # noqa: PLC0415

    user_id = 123456789012345678

    class _Shard:
        id = 0
        shard_count = 1

        def get_user_id(self) -> hikari.Snowflake:
            return hikari.Snowflake(user_id)

    bot = hikari.GatewayBot(
        world.make_bot_token(user_id),
        banner=None,
        intents=hikari.Intents.ALL,
        suppress_optimization_warning=True,
    )
    shard = typing.cast("typing.Any", _Shard())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for payload in payloads:
        bot.event_manager.consume_raw_event("GUILD_CREATE", shard, payload)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


#: The layout before buckets were sized to the population: 2**16 of them, whatever it was.
OLD_BUCKET_BITS: typing.Final = 16


async def member_bytes(
    redis: aioredis.Redis,
    nodes: list[aioredis.Redis],
    args: argparse.Namespace,
    total: int,
    bucket_bits: int,
) -> tuple[float, dict[str, int], float]:
    """Bytes per member (with its user and member-set entry) of ``total`` members written in
    the ``bucket_bits`` layout, the bytes by key kind, and the members written per second."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    redis_keys = keys.RedisKeys(namespace, "main", bucket_bits=bucket_bits)
    cache_writer = writer.CacheWriter(redis_keys, resources.DEFAULT, shard_count=1)
    guilds = -(-total // args.members)
    written = 0
    started = time.perf_counter()
    try:
        for payload in guild_payloads(args, guilds):
            await cache_writer.write(redis, [(0, "GUILD_CREATE", payload)])
            written += len(payload["members"])
        seconds = time.perf_counter() - started
        totals: dict[str, int] = {}
        for node in nodes:  # a cluster's keys are measured on the master holding them
            for kind, size in (await measure(node, f"{namespace}:main:*")).items():
                totals[kind] = totals.get(kind, 0) + size
    finally:
        for node in nodes:
            await delete(node, f"{namespace}:*")
    per_member = totals.get("mb", 0) + totals.get("ub", 0) + totals.get("g:mi", 0)
    return per_member / written, totals, written / seconds


async def scale_points(args: argparse.Namespace) -> None:
    """Bytes per member at each ``--members-total``, sized layout next to the old one."""
    import pathlib  # noqa: PLC0415 - only this mode starts servers
    import tempfile  # noqa: PLC0415

    from shared import redis_client, secret  # noqa: PLC0415
    from tests import servers  # noqa: PLC0415 - the suite's private servers, not a fixture

    totals = [int(t) for t in args.members_total.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        targets: list[tuple[str, typing.Any]] = []
        if "standalone" in args.redis:
            targets.append(("standalone", servers.PrivateRedis(pathlib.Path(tmp) / "standalone")))
        if "cluster" in args.redis:
            targets.append(("cluster", servers.PrivateRedisCluster(pathlib.Path(tmp) / "cluster")))
        print("| Redis | members | layout | buckets | bytes per member | members/s written |")
        print("|---|---|---|---|---|---|")
        for name, server in targets:
            server.directory.mkdir(parents=True)
            server.start()
            try:
                redis = redis_client.connect(secret.Secret(server.url))
                ports = [server.port] if name == "standalone" else server.masters()
                nodes = [aioredis.Redis(host="127.0.0.1", port=port) for port in ports]
                try:
                    for total in totals:
                        sized = keys.cache_bucket_bits(total)
                        layouts = {"sized": sized, "old": OLD_BUCKET_BITS}
                        for label in args.layouts.split(","):
                            bits = layouts[label]
                            per, _, rate = await member_bytes(redis, nodes, args, total, bits)
                            print(
                                f"| {name} | {total:,} | {label} | 2^{bits} | {per:.0f} | {rate:,.0f} |",
                                flush=True,
                            )
                finally:
                    for node in nodes:
                        await node.aclose()
                    await redis.aclose()
            finally:
                server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--guilds", type=int, default=1000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--roles", type=int, default=10)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument(
        "--members-total",
        default="",
        help="comma-separated populations (e.g. 20000,200000,2000000): bytes per member at each",
    )
    parser.add_argument(
        "--redis", default="standalone,cluster", help="with --members-total: where to measure"
    )
    parser.add_argument(
        "--layouts", default="sized,old", help="with --members-total: sized, old or both"
    )
    args = parser.parse_args()
    if args.members_total:
        await scale_points(args)
        return
    redis = aioredis.Redis.from_url(REDIS_URL)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    payloads = population(args)
    members = sum(len(p["members"]) for p in payloads)
    # As a deployment of this population is configured (CACHE_MEMBERS).
    redis_keys = keys.RedisKeys(namespace, "main", bucket_bits=keys.cache_bucket_bits(members))
    channels = sum(len(p["channels"]) for p in payloads)
    roles = sum(len(p["roles"]) for p in payloads)
    try:
        cache_writer = writer.CacheWriter(redis_keys, resources.DEFAULT, shard_count=1)
        started = time.perf_counter()
        for payload in payloads:
            await cache_writer.write(redis, [(0, "GUILD_CREATE", payload)])
        write_seconds = time.perf_counter() - started
        ours = await measure(redis, f"{namespace}:main:*")
        naive_prefix = f"{namespace}:naive"
        await write_naive(redis, naive_prefix, payloads)
        naive = await measure(redis, f"{naive_prefix}:*")

        per_member = ours.get("mb", 0) + ours.get("ub", 0) + ours.get("g:mi", 0)
        per_channel = ours.get("g:c", 0) + ours.get("cb", 0)
        per_guild = sum(
            ours.get(k, 0) for k in ("g", "g:r", "g:e", "guilds", "shard", "unavailable")
        )
        ours_total = sum(ours.values())
        naive_total = sum(naive.values())
        print(
            f"population: {len(payloads):,} guilds, {members:,} members (with their users), {channels:,} channels, {roles:,} roles; 2^{redis_keys.bucket_bits} member buckets"
        )
        print(
            f"written through the cache writer in {write_seconds:.1f} s ({members / write_seconds:,.0f} members/s)"
        )
        print()
        print("| bytes | shardline cache | naive (one JSON per entity) | ratio |")
        print("|---|---|---|---|")
        print(
            f"| per member, with its user | {per_member / members:.0f} | {naive.get('member', 0) / members:.0f} | {per_member / max(naive.get('member', 1), 1):.2f} |"
        )
        print(
            f"| per channel | {per_channel / channels:.0f} | {naive.get('channel', 0) / channels:.0f} | {per_channel / max(naive.get('channel', 1), 1):.2f} |"
        )
        print(
            f"| per guild (own fields, roles, emojis) | {per_guild / len(payloads):.0f} | {(naive.get('guild', 0) + naive.get('role', 0)) / len(payloads):.0f} | {per_guild / max(naive.get('guild', 0) + naive.get('role', 0), 1):.2f} |"
        )
        print(
            f"| everything | {ours_total / 1e6:.1f} MB | {naive_total / 1e6:.1f} MB | {ours_total / naive_total:.2f} |"
        )

        with_members = gateway_bot_cache_bytes(payloads)
        without_members = gateway_bot_cache_bytes([{**p, "members": []} for p in payloads])
        hikari_member = (with_members - without_members) / members
        print()
        print(
            "| bytes | shardline cache (Redis, shared by every process) | hikari GatewayBot cache (one process's heap) | ratio |"
        )
        print("|---|---|---|---|")
        print(
            f"| per member, with its user | {per_member / members:.0f} | {hikari_member:.0f} | {per_member / members / max(hikari_member, 1):.2f} |"
        )
        print(
            f"| everything | {ours_total / 1e6:.1f} MB | {with_members / 1e6:.1f} MB | {ours_total / max(with_members, 1):.2f} |"
        )
        print()

        factory = entity_factory.EntityFactoryImpl(typing.cast("typing.Any", object()))
        cache_reader = reader.CacheReader(redis, redis_keys, factory)
        rng = random.Random(1)
        timings = []
        for _ in range(args.samples):
            payload = rng.choice(payloads)
            member = rng.choice(payload["members"])
            channel = rng.choice(payload["channels"])
            t0 = time.perf_counter()
            result = await cache_reader.member_permissions(
                int(payload["id"]), int(member["user"]["id"]), int(channel["id"])
            )
            timings.append(time.perf_counter() - t0)
            assert result is not None
        baseline = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            await redis.hget(redis_keys.guild_permissions(int(payloads[0]["id"])), "owner")
            baseline.append(time.perf_counter() - t0)

        def quantiles(values: list[float]) -> str:
            values.sort()
            p50 = statistics.median(values) * 1000
            p99 = values[int(len(values) * 0.99)] * 1000
            return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"

        print()
        print(
            f"member-with-permissions in a channel ({args.samples:,} lookups, loopback): {quantiles(timings)}"
        )
        print(f"baseline, one bare HGET through the same client: {quantiles(baseline)}")
    finally:
        await delete(redis, f"{namespace}:*")
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
