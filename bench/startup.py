"""Start-up of N shards, against the least Discord's identify limits allow.

    .venv/bin/python -m bench.startup [--shards 8] [--max-concurrency 2]

Discord lets a bot IDENTIFY ``max_concurrency`` shards per 5 seconds, so N shards need at
least ``(ceil(N / max_concurrency) - 1) * 5`` seconds. Measured from process start to every
shard connected (READY), against the emulator (which enforces the identify limit and closes
a shard that breaks it with 4009... as Discord does): a real ``python -m gateway`` process
holding all N shards, and, in the same run, a single-process hikari ``GatewayBot``. Each is
split at the first IDENTIFY the emulator accepted: what comes before it (process start,
imports, connections; for the GatewayBot, already imported, only ``start()``), and the
identify phase, which is what Discord's limit bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import sys
import time
import uuid

from bench import cleanup
from bench.latency import AMQP_URL, REDIS_URL, ROOT, Emulator, gateway_bot


@dataclasses.dataclass(frozen=True, slots=True)
class Startup:
    total: float
    """From process start (the GatewayBot: from ``start()``) to every shard READY."""
    before_identify: float
    """Up to the first IDENTIFY the emulator accepted."""

    @property
    def identifying(self) -> float:
        return self.total - self.before_identify


async def connected(emulator: Emulator, shards: int, started_wall: float) -> Startup:
    _, first, done = (await emulator.command(f"wait-shards {shards}")).split()
    return Startup(float(done) - started_wall, float(first) - started_wall)


async def shardline_case(shards: int, concurrency: int) -> Startup:
    emulator = await Emulator.start(1, shards, concurrency)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    env = {
        "DISCORD_TOKEN": emulator.token, "DISCORD_API_URL": emulator.api_url,
        "AMQP_URL": AMQP_URL, "REDIS_URL": REDIS_URL, "NAMESPACE": namespace,
        "HEALTH_PORT": "0", "LOG_LEVEL": "WARNING", "SHARD_COUNT": str(shards),
        "SHARD_IDS": f"0-{shards - 1}",
    }  # fmt: skip
    started = time.time()
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-O", "-m", "gateway", env={**os.environ, **env}, cwd=ROOT
    )
    try:
        return await connected(emulator, shards, started)
    finally:
        gateway.terminate()
        await gateway.wait()
        await emulator.close()
        await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, [])


async def gateway_bot_case(shards: int, concurrency: int) -> Startup:
    emulator = await Emulator.start(1, shards, concurrency)
    bot = gateway_bot(emulator)
    started = time.time()
    try:
        await bot.start(shard_count=shards, check_for_updates=False)
        return await connected(emulator, shards, started)
    finally:
        await bot.close()
        await emulator.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--max-concurrency", type=int, default=2)
    args = parser.parse_args()
    least = (math.ceil(args.shards / args.max_concurrency) - 1) * 5
    ours = await shardline_case(args.shards, args.max_concurrency)
    baseline = await gateway_bot_case(args.shards, args.max_concurrency)
    print(
        f"| start-up of {args.shards} shards, max_concurrency {args.max_concurrency} "
        "| seconds | over the least possible | before the first IDENTIFY | identifying |"
    )
    print("|---|---|---|---|---|")
    print(f"| the least Discord's identify limit allows | {least:.1f} | | | {least:.1f} |")
    for name, case in (
        ("Shardline gateway process", ours),
        ("baseline: one hikari GatewayBot (imported already)", baseline),
    ):
        print(
            f"| {name} | {case.total:.1f} | +{case.total - least:.1f} s "
            f"| {case.before_identify:.2f} | {case.identifying:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
