"""Redis operations per event, for the capacity model: gateway and worker, one shard.

    .venv/bin/python -m bench.redis_ops [--small 2000] [--large 12000] [--batch 50]

Starts a private ``redis-server`` (so every command counted is ours), then runs twice each,
with ``--small`` and ``--large`` events:

* a real ``python -m gateway`` forwarding MESSAGE_CREATE from the emulator (``gateway_forward``);
* a worker replica handling MESSAGE_CREATE envelopes, one per message and ``--batch`` per
  message (``worker_throughput``).

Counts every command Redis executed (``INFO commandstats``, ``calls`` summed) over each run;
the difference between the two runs divided by the difference in events is the marginal cost
of an event (start-up, heartbeats and shutdown cancel out, up to the runs' different lengths).
Prints commands per event by command, and in total.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing
import uuid

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def commandstats(port: int) -> collections.Counter[str]:
    client = redis.Redis(port=port)
    try:
        stats = typing.cast("dict[str, dict[str, int]]", client.info("commandstats"))
    finally:
        client.close()
    return collections.Counter(
        {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}
    )


async def counted(
    port: int, run: typing.Callable[[], typing.Awaitable[object]]
) -> collections.Counter[str]:
    before = commandstats(port)
    await run()
    after = commandstats(port)
    after.subtract(before)
    after.subtract({"info": after["info"]})  # ours
    return +after


def per_event(
    small: collections.Counter[str], large: collections.Counter[str], events: int
) -> dict[str, float]:
    names = set(small) | set(large)
    return {name: (large[name] - small[name]) / events for name in sorted(names)}


def report(label: str, costs: dict[str, float]) -> None:
    shown = {name: cost for name, cost in costs.items() if abs(cost) >= 0.0005}
    print(f"{label}: {sum(costs.values()):.3f} Redis commands per event")
    for name, cost in sorted(shown.items(), key=lambda item: -item[1]):
        print(f"  {name:<14} {cost:.3f}")


async def measure(port: int, args: argparse.Namespace) -> None:
    # Imported now: they read REDIS_URL when imported.
    from bench import cleanup, gateway_forward, worker_throughput  # noqa: PLC0415

    runs = {}
    for events in (args.small, args.large):
        namespace = f"bench{uuid.uuid4().hex[:8]}"
        runs["gateway", events] = await counted(
            port, functools.partial(gateway_forward.gateway_case, namespace, events, 780)
        )
        items = worker_throughput.envelopes(events)
        for batch in (1, args.batch):
            bodies = worker_throughput.encode(items, batch)
            namespace = f"bench{uuid.uuid4().hex[:8]}"
            try:
                runs[f"worker x{batch}", events] = await counted(
                    port,
                    functools.partial(worker_throughput.shardline_case, namespace, bodies, events),
                )
            finally:
                await cleanup.cleanup(
                    worker_throughput.AMQP_URL, os.environ["REDIS_URL"], namespace, ["bench"]
                )
    extra = args.large - args.small
    for label, name in (
        ("gateway (MESSAGE_CREATE, one shard)", "gateway"),
        ("worker, one event per message", "worker x1"),
        (f"worker, {args.batch} events per message", f"worker x{args.batch}"),
    ):
        report(label, per_event(runs[name, args.small], runs[name, args.large], extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=12000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="bench-redis-ops-"))
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    subprocess.run(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--daemonize", "yes",
         "--pidfile", str(directory / "redis.pid"), "--dir", str(directory),
         "--logfile", str(directory / "redis.log"), "--save", "", "--appendonly", "no"],
        check=True,
    )  # fmt: skip
    time.sleep(0.5)
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    try:
        asyncio.run(measure(port, args))
    finally:
        os.kill(int((directory / "redis.pid").read_text().strip()), signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
