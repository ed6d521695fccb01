"""Every benchmark, one command, each with its baseline measured in the same run.

    .venv/bin/python -m bench [--scale quick|full] [--out FILE] [--plot FILE.png]
                              [--rates 250,1000] [--guilds N] [--shards N] [--events N]

Runs, one after another (they share this machine's cores, so never side by side):
gateway forwarding, worker throughput, end-to-end latency at fixed rates (with a PNG plot of
latency against event rate), the broker hop alone at the same rates, command round trip, start-up of N shards against the identify
limit, cache memory per guild and member, event helpers' cache snapshot, settings reads, the event manager's cost per event, REST rate limits across replicas. Each prints its Markdown table; this collects them
with the machine's description, into ``--out`` when given. ``quick`` takes about five minutes
here, ``full`` about fifteen. ``--rates``, ``--guilds``, ``--shards`` and ``--events`` set
the scale of the benchmarks that take them, over the preset.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: (title, module, quick arguments, full arguments)
RUNS: list[tuple[str, str, list[str], list[str]]] = [
    ("Gateway forwarding", "bench.gateway_forward", ["--events", "20000"], ["--events", "50000"]),
    (
        "Worker throughput",
        "bench.worker_throughput",
        ["--events", "10000", "--runs", "1"],
        ["--events", "20000", "--runs", "3"],
    ),
    (
        "End-to-end latency",
        "bench.latency",
        ["--rates", "250,1000", "--seconds", "5"],
        ["--rates", "100,250,500,1000,2000", "--seconds", "10"],
    ),
    (
        "Broker hop alone",
        "bench.broker_hop",
        ["--rates", "250,1000", "--seconds", "5"],
        ["--rates", "100,250,500,1000,2000", "--seconds", "8"],
    ),
    ("Command round trip", "bench.command_roundtrip", ["--count", "150"], ["--count", "400"]),
    (
        "Broker recovery under link latency",
        "bench.broker_recovery",
        ["--delays", "0.05", "--runs", "1"],
        ["--delays", "0,0.05,0.2", "--runs", "3"],
    ),
    (
        "Start-up of N shards",
        "bench.startup",
        ["--shards", "4", "--max-concurrency", "2"],
        ["--shards", "16", "--max-concurrency", "4"],
    ),
    (
        "Cache memory",
        "bench.cache_memory",
        ["--guilds", "200", "--members", "100"],
        ["--guilds", "1000", "--members", "200"],
    ),
    ("Event helpers", "bench.event_view", ["--events", "5000"], ["--events", "10000"]),
    ("Settings reads", "bench.settings_reads", ["--reads", "5000"], ["--reads", "20000"]),
    ("Event manager", "bench.event_manager", ["--events", "20000"], ["--events", "50000"]),
    ("REST rate limits", "bench.rest_limits", ["--latency-requests", "300"], []),
]


#: A scale option of this command -> the benchmarks (and their flag) it sets.
OVERRIDES: dict[str, list[tuple[str, str]]] = {
    "rates": [("bench.latency", "--rates"), ("bench.broker_hop", "--rates")],
    "guilds": [("bench.cache_memory", "--guilds"), ("bench.settings_reads", "--guilds")],
    "shards": [("bench.startup", "--shards")],
    "events": [("bench.gateway_forward", "--events"), ("bench.worker_throughput", "--events")],
}


def with_overrides(module: str, arguments: list[str], args: argparse.Namespace) -> list[str]:
    result = list(arguments)
    for option, targets in OVERRIDES.items():
        value = getattr(args, option)
        for target, flag in targets:
            if value is None or target != module:
                continue
            if flag in result:
                result[result.index(flag) + 1] = str(value)
            else:
                result += [flag, str(value)]
    return result


def machine() -> str:
    cpus = os.cpu_count()
    memory = ""
    meminfo = pathlib.Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GB"
    return f"{platform.platform()}, Python {platform.python_version()}, {cpus} cores{memory}"


async def run(module: str, arguments: list[str]) -> tuple[int, str, float]:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-O", "-m", module, *arguments,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(), time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--scale", choices=("quick", "full"), default="quick")
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--plot", type=pathlib.Path, default=ROOT / "docs" / "latency.png")
    parser.add_argument("--only", help="comma-separated titles (e.g. 'Command round trip')")
    parser.add_argument("--rates", help="events per second for the latency runs, e.g. 250,1000")
    parser.add_argument("--guilds", type=int)
    parser.add_argument("--shards", type=int)
    parser.add_argument("--events", type=int)
    args = parser.parse_args()
    wanted = {t.strip().lower() for t in args.only.split(",")} if args.only else None
    sections = [
        f"# Shardline benchmarks ({args.scale})",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python -m bench --scale {args.scale}`.",
    ]
    failed = []
    for title, module, quick, full in RUNS:
        if wanted is not None and title.lower() not in wanted:
            continue
        arguments = with_overrides(module, quick if args.scale == "quick" else full, args)
        if module == "bench.latency":
            arguments += ["--plot", str(args.plot)]
        print(f"== {title} ({module} {' '.join(arguments)})", file=sys.stderr, flush=True)
        code, output, seconds = await run(module, arguments)
        sections += ["", f"## {title}", "", output.strip(), "", f"({seconds:.0f} s)"]
        if code:
            failed.append(title)
            sections.append(f"**failed with exit status {code}**")
    report = "\n".join(sections) + "\n"
    print(report)
    if args.out is not None:
        args.out.write_text(report)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    asyncio.run(main())
