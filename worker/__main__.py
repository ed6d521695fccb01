"""``python -m worker``: one worker replica."""

from __future__ import annotations

import asyncio
import sys

from shared import config
from shared import logging as shard_logging
from worker import app


def main() -> None:
    settings = config.load_or_exit(config.WorkerSettings.from_env, program="worker")
    shard_logging.configure(settings.core.log_level)
    try:
        asyncio.run(app.WorkerApp(settings).run())
    except app.PluginError as exc:
        sys.stderr.write(f"worker: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
