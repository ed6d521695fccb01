"""``python -m playground``: Shardline against a local Discord, in a web page, with no token.

Starts the emulated Discord and Lavalink with a small world (two guilds on two shards, three
test users), serves the chat page, and runs the platform natively against it: gateways and
workers as real processes. Their RabbitMQ, Redis and MongoDB are those ``AMQP_URL``,
``REDIS_URL`` and ``MONGO_URL`` name; each one left unset is started privately for the run
and removed on exit. Each run uses a namespace of its own (``NAMESPACE``, else a new one), so
nothing an earlier run stored is resumed. ``--no-platform`` serves Discord only (what the
compose file's ``playground`` service does: the gateway and worker containers connect to it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import pathlib
import signal
import sys
import tempfile
import typing

from playground import servers
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


class PlaygroundError(Exception):
    """Why the playground cannot run, in one line for the terminal (no traceback)."""


async def _run(args: argparse.Namespace, env: typing.Mapping[str, str]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    platform = None
    if not args.no_platform:
        # Both fail at once with one line, before anything is started.
        platform = (servers.RunScope.from_env(env), servers.Servers(env))
    options = server.PlaygroundOptions(host=args.host, port=args.port, shard_count=args.shards)
    playground = server.Playground(options)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(playground.close)
        try:
            await playground.start()
        except OSError as exc:
            raise PlaygroundError(_listen_error(exc, args.host, args.port)) from None
        if platform is None:
            _say(f"Shardline playground: open {playground.url}/")
        else:
            scope, backing = platform
            await _run_platform(args, env, playground, scope, backing, stack, stopping)
        await stopping.wait()


async def _run_platform(
    args: argparse.Namespace,
    env: typing.Mapping[str, str],
    playground: server.Playground,
    scope: servers.RunScope,
    backing: servers.Servers,
    stack: contextlib.AsyncExitStack,
    stopping: asyncio.Event,
) -> None:
    """Start the servers and the processes; ``stack`` stops them, the processes first. The
    page's address is printed once it lists the processes."""
    stack.push_async_callback(backing.close)
    if not await _until(backing.start(), stopping, timeout=60.0):
        return
    urls = backing.urls
    if backing.given:
        if scope.given:  # a namespace an earlier run may have used: its sessions go first
            await _clean(urls, scope, database=False, when="start")
        stack.push_async_callback(_clean, urls, scope, database=not scope.given, when="exit")
    log_dir = args.log_dir or pathlib.Path(tempfile.mkdtemp(prefix="shardline-playground-"))
    plugins = ",".join(p for p in (PLUGINS, env.get("WORKER_PLUGINS", "")) if p)
    child_env = supervisor_module.child_env(env, playground.url, plugins)
    child_env.update(urls, NAMESPACE=scope.namespace)
    supervisor = supervisor_module.Supervisor(
        child_env, gateways=args.gateways, workers=args.workers, log_dir=log_dir
    )
    playground.supervisor = supervisor
    supervisor.listeners.append(playground.on_process)
    stack.push_async_callback(supervisor.close)
    _say(f"Shardline playground: open {playground.url}/")
    if backing.directory is not None:
        started = ", ".join(f"{s.label} on {s.port}" for s in backing.private)
        _say(f"  private {started}: in {backing.directory} (removed on exit)")
    _say(f"  gateway and worker logs: {supervisor.log_dir}")
    operator = " ".join(f"{name}={urls[name]}" for name in ("AMQP_URL", "REDIS_URL"))
    _say(f"  operator CLI: {operator} NAMESPACE={scope.namespace} shardline status")
    # A SIGTERM while the commands sync and the processes start stops at once; a failed
    # start (sync-commands) stops the playground.
    try:
        await _until(supervisor.start(), stopping, timeout=10.0)
    except supervisor_module.StartError as exc:
        raise PlaygroundError(str(exc)) from None


async def _until(
    work: typing.Coroutine[typing.Any, typing.Any, None],
    stopping: asyncio.Event,
    *,
    timeout: float,
) -> bool:
    """Run ``work`` unless ``stopping`` is set first (then cancel it, waiting up to ``timeout``
    seconds for it to undo itself): whether it finished."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        await lifecycle.cancel_and_wait([task], timeout=timeout)
        return False
    task.result()
    return True


async def _clean(
    urls: typing.Mapping[str, str], scope: servers.RunScope, *, database: bool, when: str
) -> None:
    try:
        await servers.clean_namespace(urls, scope, database=database)
    except Exception as exc:  # told in one line; at exit, the rest still stops
        if when == "start":
            raise PlaygroundError(
                f"cannot clear namespace {scope.namespace!r} in the given servers: {exc}"
            ) from None
        logging.getLogger(__name__).warning(
            "namespace %s left in the given servers: %s", scope.namespace, exc
        )


def _listen_error(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use: choose another with --port N "
            "(--port 0 picks a free one)"
        )
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose --host and --port"


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the terminal's own lines


def main(argv: list[str] | None = None) -> None:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.idle_with_token and config.discord_token_given():
        print(  # noqa: T201
            "DISCORD_TOKEN is set: Shardline talks to Discord, the playground is not needed."
        )
        return
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(args, dict(os.environ)))
    except (
        PlaygroundError,
        servers.MissingServerError,
        servers.ServerStartError,
        config.ConfigError,
    ) as exc:
        sys.stderr.write(f"python -m playground: {exc}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
