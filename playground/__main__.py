"""``python -m playground``: Shardline against a local Discord, in a web page, with no token.

Starts the emulated Discord and Lavalink with a small world (two guilds on two shards, three
test users), serves the chat page, and runs the platform natively against it: gateways and
workers as real processes using the RabbitMQ, Redis and MongoDB of ``AMQP_URL``, ``REDIS_URL``
and ``MONGO_URL`` (local defaults). ``--no-platform`` serves Discord only (what the compose
file's ``playground`` service does: the gateway and worker containers connect to it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pathlib
import signal
import sys
import tempfile

from playground import supervisor as supervisor_module
from playground.web import server
from shared import config, lifecycle

PLUGINS = "worker.plugins.core,worker.plugins.music,playground.demo"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m playground", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="the page's (and Discord's) port")
    parser.add_argument("--shards", type=int, default=2, help="shards Discord recommends")
    parser.add_argument("--gateways", type=int, default=2, help="gateway processes to run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes to run")
    parser.add_argument(
        "--no-platform", action="store_true", help="serve Discord only; run nothing else"
    )
    parser.add_argument(
        "--idle-with-token",
        action="store_true",
        help="with DISCORD_TOKEN set, exit at once (the compose file's default)",
    )
    parser.add_argument("--log-dir", type=pathlib.Path, help="where the processes' logs go")
    args = parser.parse_args(argv)
    if not 1 <= args.shards <= 64:
        parser.error("--shards must be from 1 to 64")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be from 0 to 65535")
    return args


async def _run(args: argparse.Namespace) -> None:
    supervisor = None
    options = server.PlaygroundOptions(host=args.host, port=args.port, shard_count=args.shards)
    playground = server.Playground(options)
    await playground.start()
    if not args.no_platform:
        log_dir = args.log_dir or pathlib.Path(tempfile.mkdtemp(prefix="shardline-playground-"))
        plugins = ",".join(p for p in (PLUGINS, os.environ.get("WORKER_PLUGINS", "")) if p)
        env = supervisor_module.child_env(os.environ, playground.url, plugins)
        supervisor = supervisor_module.Supervisor(
            env, gateways=args.gateways, workers=args.workers, log_dir=log_dir
        )
        playground.supervisor = supervisor
        supervisor.listeners.append(playground.on_process)
    print(f"Shardline playground: open {playground.url}/", flush=True)  # noqa: T201
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        if supervisor is not None:
            print(f"  gateway and worker logs: {supervisor.log_dir}", flush=True)  # noqa: T201
            # A SIGTERM while the commands sync and the processes start stops at once.
            starting = asyncio.ensure_future(supervisor.start())
            stopped = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not starting.done():
                await lifecycle.cancel_and_wait([starting])
            else:
                starting.result()  # a failed start (sync-commands) stops the playground
        await stopping.wait()
    finally:
        if supervisor is not None:
            await supervisor.close()
        await playground.close()


def main(argv: list[str] | None = None) -> None:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.idle_with_token and config.discord_token_given():
        print(  # noqa: T201
            "DISCORD_TOKEN is set: Shardline talks to Discord, the playground is not needed."
        )
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
