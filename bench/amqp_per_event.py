"""RabbitMQ messages per gateway event, at a quiet and a busy rate (for docs/scale.md).

    .venv/bin/python -m bench.amqp_per_event [--rates 50,500,2000] [--seconds 5] [--bytes 780]

One Discord emulator process sends MESSAGE_CREATE at each rate to one shard of a gateway
(``GatewayApp``, in this process, as ``python -m gateway`` runs it), which publishes them to
RabbitMQ; one worker replica (``WorkerApp``, in this process) consumes them. The platform's own
counters, read before and after each rate, give per event: AMQP messages the gateway
published (each confirmed once by the broker), messages delivered to the worker (each acked
once), and events per message (the publisher's batching). Every event must reach the
listener, or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid

import hikari

from bench import cleanup
from bench.latency import Emulator, Recorder
from gateway import app as gateway_app
from shared import config
from worker import app
from worker import bot as bot_module

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def run(rates: list[float], seconds: float, size: int) -> list[tuple[float, ...]]:
    emulator = await Emulator.start()
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    recorder = Recorder()
    bot = bot_module.Bot()
    bot.listen(hikari.GuildMessageCreateEvent)(recorder.listener)
    env = {
        "DISCORD_TOKEN": emulator.token, "DISCORD_API_URL": emulator.api_url,
        "AMQP_URL": AMQP_URL, "REDIS_URL": REDIS_URL, "NAMESPACE": namespace,
        "HEALTH_PORT": "0", "LOG_LEVEL": "WARNING", "SHARD_COUNT": "1", "SHARD_IDS": "0",
    }  # fmt: skip
    replica = app.WorkerApp(config.WorkerSettings.from_env(env), bot)
    gateway = gateway_app.GatewayApp(config.GatewaySettings.from_env(env))
    rows = []
    try:
        await replica.start()
        await gateway.start()
        await emulator.command("wait-shards 1")
        await asyncio.sleep(1.0)  # the GUILD_CREATE burst, the first checkpoint
        publisher, consumer = gateway.publisher, replica.consumer
        assert publisher is not None
        assert consumer is not None
        for rate in rates:
            count = int(rate * seconds)
            recorder.reset(count)
            events, messages = publisher.stats.published_events, publisher.stats.published_messages
            delivered = consumer.stats.consumed
            await emulator.command(f"paced {count} {rate} {size}")
            await asyncio.wait_for(recorder.done.wait(), timeout=120)
            await asyncio.sleep(0.5)  # the last confirms
            events = publisher.stats.published_events - events
            messages = publisher.stats.published_messages - messages
            delivered = consumer.stats.consumed - delivered
            rows.append((rate, count, events, messages, delivered))
            print(f"  {rate:,.0f}/s done", file=sys.stderr, flush=True)
    finally:
        await gateway.close()
        await replica.close()
        await emulator.close()
        await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, [replica.settings.group])
    return rows


def report(rows: list[tuple[float, ...]]) -> str:
    lines = [
        (
            "| events/s | events | published msgs | msgs per event | delivered msgs | "
            "delivered per event | broker operations per event (publish+confirm+deliver+ack) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for rate, count, events, messages, delivered in rows:
        ops = (2 * messages + 2 * delivered) / events
        lines.append(
            f"| {rate:,.0f} | {count:,.0f} | {messages:,.0f} | {messages / events:.3f} | "
            f"{delivered:,.0f} | {delivered / events:.3f} | {ops:.2f} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,500,2000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--bytes", type=int, default=780)
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    print(report(await run(rates, args.seconds, args.bytes)))


if __name__ == "__main__":
    asyncio.run(main())
