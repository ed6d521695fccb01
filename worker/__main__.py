"""``python -m worker``: one worker replica."""

from __future__ import annotations

import argparse
import asyncio
import sys

from shared import config, loops
from shared import logging as shard_logging
from worker import app


def main() -> None:
    settings = config.load_or_exit(config.WorkerSettings.from_env, program="worker")
    shard_logging.configure(
        settings.core.log_level,
        fmt=settings.core.log_format,
        fields={"pool": settings.core.pool, "role": "worker"},
    )
    if sys.argv[1:2] == ["sync-commands"]:
        parser = argparse.ArgumentParser(prog="python -m worker sync-commands")
        parser.add_argument("--dry-run", action="store_true", help="print the diff only")
        parser.add_argument("--guild", type=int, help="a guild's commands instead of global")
        args = parser.parse_args(sys.argv[2:])
        try:
            report = asyncio.run(
                app.sync_commands(settings, dry_run=args.dry_run, guild_id=args.guild)
            )
        except app.PluginError as exc:
            sys.stderr.write(f"worker: {exc}\n")
            raise SystemExit(2) from None
        sys.stdout.write(report + "\n")
        return
    try:
        loops.run(app.WorkerApp(settings).run(), loop=settings.core.event_loop)
    except app.PluginError as exc:
        sys.stderr.write(f"worker: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
