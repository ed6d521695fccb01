"""End-to-end latency: emulator dispatch to listener start, Shardline next to one GatewayBot.

    .venv/bin/python -m bench.latency [--rates 250,1000,2000] [--seconds 10] [--bytes 780]

One Discord emulator process sends MESSAGE_CREATE at fixed rates, each message's content
starting with the wall-clock time it was dispatched. In the same run, against that emulator:

* Shardline: a real ``python -m gateway`` process (one shard) publishing to RabbitMQ, and one
  worker replica (``WorkerApp`` in this process, as ``python -m worker`` runs it) whose
  listener for ``hikari.GuildMessageCreateEvent`` records, when it starts, how long ago the
  event was dispatched;
* the baseline: a single-process hikari ``GatewayBot`` (default cache) with the same listener.

Prints p50/p99/p99.9 per rate for both and the difference, and the CPU per event of each
process. Everything runs on asyncio's loop, as the services do; ``--loops asyncio,uvloop`` runs
it all again on uvloop, ``--ab reads`` runs Shardline again with the worker's cache read
in a round trip of its own, ``--ab marks`` with the dedupe marks written after 10 ms (the A/Bs
of docs/benchmarks.md, issue 22). The first second of every rate is a
warm-up and is not counted; an event that never arrives fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import pathlib
import statistics
import sys
import time
import typing
import uuid

import hikari

from bench import cleanup
from shared import config, lifecycle, loops
from worker import app
from worker import bot as bot_module

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = pathlib.Path(__file__).resolve().parent.parent
WARM_UP_SECONDS = 1.0


class Emulator:
    """The emulator process (``bench.emulator_process``), driven line by line."""

    def __init__(self, process: asyncio.subprocess.Process, api_url: str, token: str) -> None:
        self.process = process
        self.api_url = api_url
        self.token = token

    @classmethod
    async def start(cls, channels: int = 1, shards: int = 1, concurrency: int = 16) -> Emulator:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-O", "-m", "bench.emulator_process",
            str(channels), str(shards), str(concurrency),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert process.stdout is not None
        _, api_url, token = (await process.stdout.readline()).decode().split()
        return cls(process, api_url, token)

    async def command(self, line: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        return (await asyncio.wait_for(self.process.stdout.readline(), timeout=600)).decode()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.command("quit")
        await self.process.wait()


class Recorder:
    """What the listener sees: the dispatch-to-listener time of every event of a run."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.seen: set[int] = set()
        self.expected = 0
        self.done = asyncio.Event()

    def reset(self, expected: int) -> None:
        self.latencies, self.seen, self.expected = [], set(), expected
        self.done.clear()

    async def listener(self, event: hikari.GuildMessageCreateEvent) -> None:
        now = time.time()
        sent, index, _ = (event.message.content or "0 -1 x").split(" ", 2)
        self.latencies.append(now - float(sent))
        self.seen.add(int(index))
        if len(self.seen) >= self.expected:
            self.done.set()


@dataclasses.dataclass
class Row:
    rate: float
    p50: float
    p99: float
    p999: float
    cpu_ms_per_event: float
    #: The same, per process (Shardline: gateway, worker; the GatewayBot: its one process).
    cpu_parts: tuple[float, ...] = ()


def cpu_seconds(pids: typing.Iterable[int]) -> float:
    """User + system CPU of processes (this one included when its pid is given)."""
    total = 0.0
    for pid in pids:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def measure(
    emulator: Emulator,
    recorder: Recorder,
    rates: list[float],
    seconds: float,
    size: int,
    pids: list[int],
) -> list[Row]:
    """Latency percentiles per rate, and the CPU ``pids`` spent per event meanwhile."""
    rows = []
    for rate in rates:
        count = int(rate * seconds)
        recorder.reset(count)
        cpu_before = [cpu_seconds([pid]) for pid in pids]
        print(f"  {rate:,.0f} events/s for {seconds:g} s ...", file=sys.stderr, flush=True)
        await emulator.command(f"paced {count} {rate} {size}")
        try:
            await asyncio.wait_for(recorder.done.wait(), timeout=60)
        except TimeoutError:
            missing = count - len(recorder.seen)
            raise SystemExit(f"{missing} events never reached the listener") from None
        print(f"  {rate:,.0f} events/s: done", file=sys.stderr, flush=True)
        parts = [
            (cpu_seconds([pid]) - before) / count * 1000
            for pid, before in zip(pids, cpu_before, strict=True)
        ]
        kept = sorted(recorder.latencies[int(rate * WARM_UP_SECONDS) :])
        cuts = statistics.quantiles(kept, n=1000, method="inclusive")
        rows.append(
            Row(
                rate,
                cuts[499] * 1000,
                cuts[989] * 1000,
                cuts[998] * 1000,
                sum(parts),
                tuple(parts),
            )
        )
    return rows


async def shardline_case(
    emulator: Emulator,
    rates: list[float],
    seconds: float,
    size: int,
    *,
    loop: str = loops.DEFAULT,
    read_with_claim: bool = True,
    flush_every: float | None = None,
) -> list[Row]:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    recorder = Recorder()
    bot = bot_module.Bot()
    bot.app.read_with_claim = read_with_claim
    bot.listen(hikari.GuildMessageCreateEvent)(recorder.listener)
    env = {
        "DISCORD_TOKEN": emulator.token, "DISCORD_API_URL": emulator.api_url,
        "AMQP_URL": AMQP_URL, "REDIS_URL": REDIS_URL, "NAMESPACE": namespace,
        "HEALTH_PORT": "0", "LOG_LEVEL": "WARNING", "SHARD_COUNT": "1", "SHARD_IDS": "0",
        "EVENT_LOOP": loop,
    }  # fmt: skip
    replica = app.WorkerApp(config.WorkerSettings.from_env(env), bot)
    gateway = None
    try:
        await replica.start()  # binds its queue and announces its interests first
        if flush_every is not None and replica.deduplicator is not None:
            replica.deduplicator.flush_every = flush_every
        lifecycle.settle_heap()  # as run_until_stopped does in `python -m worker`
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, "-O", "-m", "gateway", env={**os.environ, **env}, cwd=ROOT
        )
        await emulator.command("wait-shards 1")
        await asyncio.sleep(1.0)  # the GUILD_CREATE burst, the first checkpoint
        pids = [gateway.pid, os.getpid()]
        return await measure(emulator, recorder, rates, seconds, size, pids)
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                await asyncio.wait_for(gateway.wait(), timeout=30)
            except TimeoutError:
                print("the gateway did not stop within 30 s of SIGTERM", file=sys.stderr)
                gateway.kill()
                await gateway.wait()
        await replica.close()
        await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, [replica.settings.group])


def gateway_bot(emulator: Emulator) -> hikari.GatewayBot:
    """The baseline every benchmark compares with: one hikari GatewayBot, default cache."""
    return hikari.GatewayBot(
        emulator.token,
        rest_url=emulator.api_url,
        intents=config.DEFAULT_INTENTS,
        banner=None,
        logs="WARNING",
        suppress_optimization_warning=True,
    )


async def gateway_bot_case(
    emulator: Emulator, rates: list[float], seconds: float, size: int
) -> list[Row]:
    recorder = Recorder()
    bot = gateway_bot(emulator)
    bot.subscribe(hikari.GuildMessageCreateEvent, recorder.listener)
    await bot.start(shard_count=1, check_for_updates=False)
    try:
        await emulator.command("wait-shards 1")
        await asyncio.sleep(1.0)
        return await measure(emulator, recorder, rates, seconds, size, [os.getpid()])
    finally:
        await bot.close()


def plot(ours: list[Row], baseline: list[Row], path: pathlib.Path) -> None:
    """Latency (p50, p99) against event rate, Shardline next to the GatewayBot, as a PNG."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - an optional benchmark dependency

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("no plot: pip install -e '.[bench]' for matplotlib", file=sys.stderr)
        return
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    rates = [row.rate for row in ours]
    for rows, name, colour in (
        (ours, "Shardline", "tab:blue"),
        (baseline, "GatewayBot", "tab:grey"),
    ):
        axes.plot(rates, [r.p50 for r in rows], "-o", color=colour, label=f"{name} p50")
        axes.plot(rates, [r.p99 for r in rows], "--o", color=colour, label=f"{name} p99")
    axes.set_xlabel("events per second")
    axes.set_ylabel("dispatch to listener (ms)")
    axes.set_yscale("log")
    axes.grid(visible=True, which="both", alpha=0.3)
    axes.legend()
    axes.set_title("End-to-end latency against event rate (python -m bench.latency)")
    figure.tight_layout()
    figure.savefig(path)
    print(f"plot written to {path}", file=sys.stderr)


def report(ours: list[Row], baseline: list[Row]) -> str:
    lines = [
        (
            "| events/s | Shardline p50 / p99 / p99.9 (ms) | GatewayBot p50 / p99 / p99.9 (ms) "
            "| p50 added | CPU ms/event: gateway + worker (gateway, worker), GatewayBot "
            "| CPU ratio |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for a, b in zip(ours, baseline, strict=True):
        lines.append(
            f"| {a.rate:,.0f} | {a.p50:.2f} / {a.p99:.2f} / {a.p999:.2f} "
            f"| {b.p50:.2f} / {b.p99:.2f} / {b.p999:.2f} | {a.p50 - b.p50:+.2f} ms "
            f"| {a.cpu_ms_per_event:.3f} ({', '.join(f'{p:.3f}' for p in a.cpu_parts)}), "
            f"{b.cpu_ms_per_event:.3f} | {a.cpu_ms_per_event / b.cpu_ms_per_event:.1f}x |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace, loop: str) -> None:
    """Every case on this process's loop ``loop`` (the gateway process on the same)."""
    rates = [float(r) for r in args.rates.split(",")]
    emulator = await Emulator.start()
    try:
        ours = await shardline_case(emulator, rates, args.seconds, args.bytes, loop=loop)
        apart = None
        if args.ab == "reads":
            apart = await shardline_case(
                emulator, rates, args.seconds, args.bytes, loop=loop, read_with_claim=False
            )
        elif args.ab == "marks":
            apart = await shardline_case(
                emulator, rates, args.seconds, args.bytes, loop=loop, flush_every=0.01
            )
        baseline = await gateway_bot_case(emulator, rates, args.seconds, args.bytes)
    finally:
        await emulator.close()
    print(f"event loop: {loop}")
    print(report(ours, baseline))
    if apart is not None:
        what = {
            "reads": "the worker's cache read in a round trip of its own",
            "marks": "the worker's done marks written after 10 ms (before issue 22)",
        }[args.ab]
        print(f"\nevent loop: {loop}; {what}")
        print(report(apart, baseline))
    if args.plot is not None:
        plot(ours, baseline, args.plot)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rates", default="250,1000,2000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bytes", type=int, default=780)
    parser.add_argument("--plot", type=pathlib.Path, help="write a PNG of latency against rate")
    parser.add_argument(
        "--loops",
        default=loops.DEFAULT,
        help="event loops to run everything on, one after another (asyncio,uvloop for an A/B)",
    )
    parser.add_argument(
        "--ab",
        choices=("reads", "marks"),
        help="reads: also run Shardline with the worker's cache read apart from its claim; "
        "marks: with its done marks written after 10 ms, as before issue 22",
    )
    args = parser.parse_args()
    for loop in [name.strip() for name in args.loops.split(",") if name.strip()]:
        loops.run(run(args, loop), loop=loop)


if __name__ == "__main__":
    main()
