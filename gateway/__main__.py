"""``python -m gateway``: one gateway process of a pool."""

from __future__ import annotations

import sys

from gateway import app, discord_api
from shared import config, loops
from shared import logging as shard_logging


def main() -> None:
    settings = config.load_or_exit(config.GatewaySettings.from_env, program="gateway")
    shard_logging.configure(
        settings.core.log_level,
        fmt=settings.core.log_format,
        fields={"pool": settings.core.pool, "role": "gateway"},
    )
    try:
        loops.run(app.GatewayApp(settings).run(), loop=settings.core.event_loop)
    except discord_api.DiscordApiError as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
