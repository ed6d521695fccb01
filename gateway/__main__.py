"""``python -m gateway``: one gateway process of a pool."""

from __future__ import annotations

import asyncio
import sys

from gateway import app, discord_api
from shared import config
from shared import logging as shard_logging


def main() -> None:
    settings = config.load_or_exit(config.GatewaySettings.from_env, program="gateway")
    shard_logging.configure(
        settings.core.log_level,
        fmt=settings.core.log_format,
        fields={"pool": settings.core.pool, "role": "gateway"},
    )
    try:
        asyncio.run(app.GatewayApp(settings).run())
    except discord_api.DiscordApiError as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
