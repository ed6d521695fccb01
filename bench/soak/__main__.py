"""``python -m bench.soak --seconds N --seed S [--faults a,b] [--rate R]``: the fault soak.

Starts the system (bench/soak/system.py), draws the fault schedule from the seed and prints
it, runs load and nemesis together for N seconds, waits for the answers, and judges them from
what the emulated Discord received (bench/soak/checker.py). Exits 0 only if nothing was lost,
answered twice or late, and no identify limit or REST limit was broken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import random
import sys
import tempfile
import time

from bench.soak import checker, load, nemesis, report, system

#: Seconds after the last fault ended (and the load stopped) within which every command
#: must have been answered; longer, it is lost.
ANSWER_BOUND: float = 60.0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    parser.add_argument(
        "--faults", default=",".join(nemesis.DEFAULT_KINDS),
        help=f"comma-separated, of: {', '.join(nemesis.KINDS)} (default: all but redis-wipe)",
    )  # fmt: skip
    parser.add_argument("--rate", type=float, default=8.0, help="user actions per second")
    parser.add_argument("--png", type=pathlib.Path, default=None, help="write the figure here")
    parser.add_argument(
        "--workdir", type=pathlib.Path, default=None, help="logs; default a temp dir"
    )
    args = parser.parse_args(argv)
    unknown = [k for k in args.faults.split(",") if k and k not in nemesis.KINDS]
    if unknown:
        parser.error(f"unknown faults: {', '.join(unknown)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**6)
    return args


async def run(args: argparse.Namespace) -> int:
    kinds = [k for k in args.faults.split(",") if k]
    faults = nemesis.schedule(args.seed, args.seconds, kinds) if kinds else []
    print(f"soak: seed {args.seed}, {args.seconds:g} s, rate {args.rate:g}/s, "
          f"{len(faults)} faults:", flush=True)  # fmt: skip
    for fault in faults:
        print(f"  {fault.describe()}", flush=True)
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix=f"soak-{args.seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: logs in {workdir}", flush=True)
    the_system = system.System(workdir, system.Layout())
    try:
        await the_system.start()
        users = load.Load(the_system, rate=args.rate, seed=args.seed)
        users.prepare()
        started = time.time()
        loop = asyncio.get_running_loop()
        sending = loop.create_task(users.run())
        chaos = loop.create_task(
            nemesis.Nemesis(the_system, faults, seconds=args.seconds).run(started)
        )
        await asyncio.sleep(args.seconds)
        await chaos  # a fault still under way (a broker starting) is let finish
        users.stop()
        await sending
        stopped = time.time()
        deadline = stopped + ANSWER_BOUND
        outages = checker.outage_windows(faults)
        while time.time() < deadline and checker.check(the_system, users, outages).lost:
            await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)  # a late second answer still counts as twice
        verdict = checker.check(the_system, users, outages)
    finally:
        await the_system.close()
    print(f"soak: load ran {stopped - started:.0f} s; "
          f"background: {users.background}", flush=True)  # fmt: skip
    print("\n".join(report.fault_table(faults, verdict)))
    for line in report.findings(verdict, started):
        print(line)
    document = report.findings_document(verdict, faults, started)
    (workdir / "findings.json").write_text(json.dumps(document, indent=1))
    print(f"soak: every finding with its time in {workdir / 'findings.json'}")
    png = args.png or workdir / "soak.png"
    report.figure(png, verdict, faults, started,
                  f"python -m bench.soak --seconds {args.seconds:g} --seed {args.seed}")  # fmt: skip
    print(f"soak: figure {png}")
    print(report.quiet_late(verdict, faults))
    print(verdict.excuses())
    print(verdict.line(), flush=True)
    return 0 if verdict.ok else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(_arguments(argv)))


if __name__ == "__main__":
    sys.exit(main())
