"""Command round trip: a user's message in, the bot's REST reply seen by Discord.

    .venv/bin/python -m bench.command_roundtrip [--count 300]

One Discord emulator process; each round trip is a user posting ``!rt N`` in a channel of
its own (so Discord's per-channel rate limit never applies) and waiting until the emulator's
REST API has stored the bot's ``rt N`` reply, 20 round trips a second at most (under the
global limit of 50 requests a second, which would otherwise be what is measured). In the same
run:

* Shardline: a real ``python -m gateway`` process, RabbitMQ, and one worker replica
  (``WorkerApp`` in this process) with an ``rt`` prefix command (per-guild prefix lookup,
  checks, the shared REST rate limiter: the whole command path);
* the baseline: a single-process hikari ``GatewayBot`` whose listener replies with
  ``rest.create_message``.

Prints p50/p99 of both and the difference. The first 20 round trips are a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import uuid

import hikari

from bench import cleanup
from bench.latency import AMQP_URL, REDIS_URL, ROOT, Emulator, gateway_bot
from shared import config, lifecycle
from worker import app
from worker import bot as bot_module
from worker.commands import Context, option

WARM_UP = 20


def percentiles(took: list[float]) -> tuple[float, float]:
    kept = sorted(took[WARM_UP:])
    cuts = statistics.quantiles(kept, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def shardline_case(emulator: Emulator, count: int, mongo_url: str) -> list[float]:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    bot = bot_module.Bot()

    @bot.command(description="Round trip")
    async def rt(ctx: Context, n: int = option("which", 0)) -> None:
        await ctx.respond(f"rt {n}")

    env = {
        "DISCORD_TOKEN": emulator.token, "DISCORD_API_URL": emulator.api_url,
        "AMQP_URL": AMQP_URL, "REDIS_URL": REDIS_URL, "NAMESPACE": namespace,
        "MONGO_URL": mongo_url, "HEALTH_PORT": "0", "LOG_LEVEL": "WARNING",
        "SHARD_COUNT": "1", "SHARD_IDS": "0",
    }  # fmt: skip
    replica = app.WorkerApp(config.WorkerSettings.from_env(env), bot)
    gateway = None
    try:
        await replica.start()
        lifecycle.settle_heap()
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, "-O", "-m", "gateway", env={**os.environ, **env}, cwd=ROOT
        )
        await emulator.command("wait-shards 1")
        await asyncio.sleep(1.0)
        answer = await emulator.command(f"roundtrip {count}")
        return [float(x) for x in answer.split()[1:]]
    finally:
        if gateway is not None:
            gateway.terminate()
            await gateway.wait()
        await replica.close()
        await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, [replica.settings.group])


async def gateway_bot_case(emulator: Emulator, count: int) -> list[float]:
    bot = gateway_bot(emulator)

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        content = event.message.content or ""
        if content.startswith("!rt "):
            await bot.rest.create_message(event.channel_id, f"rt {content[4:]}")

    await bot.start(shard_count=1, check_for_updates=False)
    try:
        await emulator.command("wait-shards 1")
        await asyncio.sleep(1.0)
        answer = await emulator.command(f"roundtrip {count}")
        return [float(x) for x in answer.split()[1:]]
    finally:
        await bot.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--mongo-url", default=os.environ.get("MONGO_URL", ""))
    args = parser.parse_args()
    mongo_url = args.mongo_url
    mongod = None
    if not mongo_url:
        import tempfile  # noqa: PLC0415 - only without a MongoDB given

        from tests import servers  # noqa: PLC0415

        mongod = servers.MongoServer(__import__("pathlib").Path(tempfile.mkdtemp()))
        mongod.start()
        mongo_url = mongod.url
    try:
        emulator = await Emulator.start(channels=args.count)
        try:
            ours = await shardline_case(emulator, args.count, mongo_url)
        finally:
            await emulator.close()
        emulator = await Emulator.start(channels=args.count)
        try:
            baseline = await gateway_bot_case(emulator, args.count)
        finally:
            await emulator.close()
    finally:
        if mongod is not None:
            mongod.stop()
    a50, a99 = percentiles(ours)
    b50, b99 = percentiles(baseline)
    print("| command round trip (message in → REST reply stored) | p50 | p99 |")
    print("|---|---|---|")
    print(
        f"| Shardline: gateway process + RabbitMQ + worker command | {a50:.2f} ms | {a99:.2f} ms |"
    )
    print(
        f"| baseline: one hikari GatewayBot, listener + create_message | {b50:.2f} ms | {b99:.2f} ms |"
    )
    print(f"| added | {a50 - b50:+.2f} ms | {a99 - b99:+.2f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
