"""``shardline``: see and steer a running Shardline pool.

    shardline status                       gateways, shards, workers, queues, dead letters
    shardline dead-letters [--limit N]     what is on the dead-letter queue, and why
    shardline replay [--limit N] [--reason TEXT]
                                           put dead letters back on the events exchange
    shardline drain GATEWAY [--wait]       hand a gateway's shards to the others (resumes only)
    shardline undrain GATEWAY              let it take shards again
    shardline restart-shard SHARD [--wait] close a shard's socket; it RESUMEs where it runs
    shardline reshard-plan --shards N [--max-concurrency K]
                                           what moving to N shards would take (changes nothing)
    shardline reshard --shards N [--dry-run] [--timeout S] [--abort] [--forget]
                                           move to N shards without downtime: standby gateways
                                           identify beside the old layout, then switch over
    shardline ask QUESTION [--role gateway|worker] [--timeout S]
                                           a fleet request: every process's answer (or error)

Every command takes, before or after its name:

    --json       its result as one JSON document on stdout and nothing else (progress goes to
                 stderr); the keys are documented in docs/operations.md
    --pool NAME  the pool to read or steer, instead of POOL from the environment

Reads AMQP_URL, REDIS_URL (or their _FILE forms), NAMESPACE and POOL like the services do.
Every action is one of these; nothing is evaluated. drain, restart-shard and reshard are signed
with ADMIN_KEY (or ADMIN_KEY_FILE), the key the gateways hold (``shared.admin``): gateways
refuse what it does not vouch for, so Redis access alone (a worker's) cannot steer them.

Errors go to stderr as one line starting ``shardline:``, never with a URL or key, and the exit
status says what happened (``cli.exit_codes.ExitCode``):

    0  done, nothing wrong found
    1  the command ran and found a problem or refused (plan problems, an error answer, no such
       gateway or shard, a re-shard that cannot go on); a report still prints its result
    2  bad arguments or configuration
    3  Redis or RabbitMQ cannot be reached, refuses the login, or fails a request
    4  what --wait (or reshard) waited for did not happen in time
    5  a signed action without ADMIN_KEY, or a re-shard record the key does not vouch for
  130  interrupted (Ctrl-C): what was written stays (a drain request, a re-shard record)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
import typing
import urllib.parse

import aio_pika
import redis.exceptions

from cli import actions, context, output, reports
from cli.exit_codes import CommandError, ExitCode
from shared import admin, config, fleet

if typing.TYPE_CHECKING:
    from shared.secret import Secret

#: What a lost or refusing Redis or RabbitMQ raises (``ExitCode.UNAVAILABLE``). A timeout is
#: an ``OSError`` too.
UNAVAILABLE_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    redis.exceptions.RedisError,
    aio_pika.exceptions.AMQPError,
    OSError,
)


#: The exit codes as ``--help`` lists them.
EXIT_STATUS_HELP: typing.Final = "exit status: " + ", ".join(
    f"{code.value} {code.name.lower().replace('_', ' ')}" for code in ExitCode
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (with argparse's exit status, 2)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _at_least(minimum: int) -> typing.Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def _pool_name(text: str) -> str:
    """A pool name, checked like POOL is."""
    try:
        return config.EnvReader({"POOL": text}).name("POOL", text)
    except config.ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None


def _global_options() -> _Parser:
    """Options every command takes before or after its name. SUPPRESS as the default keeps
    the subcommand's parse from resetting what was given before the name."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print the result as one JSON document on stdout (progress goes to stderr)",
    )  # fmt: skip
    common.add_argument(
        "--pool", type=_pool_name, metavar="NAME", default=argparse.SUPPRESS,
        help="the pool to read or steer (default: POOL from the environment)",
    )  # fmt: skip
    return common


def parser() -> argparse.ArgumentParser:
    common = _global_options()
    root = _Parser(
        prog="shardline",
        description=__doc__.split("\n")[0].replace("``", ""),
        epilog=EXIT_STATUS_HELP,
        parents=[common],
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: typing.Callable[..., typing.Any], summary: str) -> _Parser:
        sub = commands.add_parser(name, parents=[common], help=summary)
        sub.set_defaults(run=run)
        return sub

    command("status", reports.status, "gateways, shards, workers, queues")
    listing = command("dead-letters", reports.list_dead_letters, "what is dead-lettered")
    listing.add_argument("--limit", type=_at_least(0), default=20)
    again = command("replay", actions.replay, "put dead letters back")
    again.add_argument("--limit", type=_at_least(0), default=100)
    again.add_argument("--reason", help="only those whose reason contains this text")
    draining = command("drain", actions.drain, "hand a gateway's shards to the others")
    draining.add_argument("gateway")
    draining.add_argument("--wait", action="store_true", help="until it holds no shard")
    draining.add_argument("--timeout", type=_seconds, default=300.0)
    back = command("undrain", actions.undrain, "let a drained gateway take shards again")
    back.add_argument("gateway")
    restart = command("restart-shard", actions.restart_shard, "restart one shard")
    restart.add_argument("shard", type=_at_least(0))
    restart.add_argument("--wait", action="store_true", help="until its gateway takes it")
    restart.add_argument("--timeout", type=_seconds, default=30.0)
    planning = command("reshard-plan", reports.reshard_plan, "what N shards would take")
    planning.add_argument("--shards", type=_at_least(1), required=True)
    planning.add_argument("--max-concurrency", type=_at_least(1), default=1)
    moving = command("reshard", actions.reshard_run, "move to N shards without downtime")
    moving.add_argument("--shards", type=_at_least(1), required=True)
    moving.add_argument("--max-concurrency", type=_at_least(1), default=1, help="for --dry-run")
    moving.add_argument("--dry-run", action="store_true", help="print the plan only")
    moving.add_argument("--abort", action="store_true", help="call off a warming re-shard")
    moving.add_argument(
        "--forget", action="store_true", help="remove a finished or unreadable re-shard record"
    )
    moving.add_argument("--timeout", type=_seconds, default=3600.0)
    asking = command("ask", reports.ask, "a fleet request to every gateway and worker")
    asking.add_argument("question", help="a registered question, e.g. stats")
    asking.add_argument("--role", choices=sorted(fleet.ROLES))
    asking.add_argument("--timeout", type=_seconds, default=fleet.DEFAULT_TIMEOUT)
    return root


def _fail(code: ExitCode, message: str) -> int:
    print(f"shardline: {' '.join(message.splitlines())}", file=sys.stderr, flush=True)
    return int(code)


def _where(url: Secret) -> str:
    """Host and port (or socket path) of a URL: never its user or password."""
    parts = urllib.parse.urlsplit(url.reveal())
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "?"
    with contextlib.suppress(ValueError):
        if parts.port is not None:
            return f"{host}:{parts.port}"
    return host


def _unavailable(exc: BaseException, settings: config.OperatorSettings) -> str:
    """One line naming the service (by host, never by URL) and the kind of failure."""
    kind = type(exc).__name__
    if isinstance(exc, redis.exceptions.RedisError):
        where = _where(settings.redis_url)
        if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return f"cannot reach Redis at {where} ({kind})"
        return f"Redis at {where} failed a request ({kind})"
    if isinstance(exc, aio_pika.exceptions.AMQPError):
        where = _where(settings.amqp_url)
        if isinstance(exc, aio_pika.exceptions.AMQPConnectionError):
            return f"cannot reach RabbitMQ at {where} ({kind})"
        return f"RabbitMQ at {where} failed a request ({kind})"
    return f"cannot reach Redis or RabbitMQ ({kind})"


def _settings(args: argparse.Namespace) -> config.OperatorSettings:
    """The environment's settings, with ``--pool`` over POOL; raises ``CommandError``."""
    try:
        settings = config.OperatorSettings.from_env()
    except config.ConfigError as exc:
        raise CommandError(ExitCode.USAGE, f"configuration error: {exc}") from None
    for name, url in (("AMQP_URL", settings.amqp_url), ("REDIS_URL", settings.redis_url)):
        try:
            urllib.parse.urlsplit(url.reveal()).port  # noqa: B018 - parsing is the check
        except ValueError:
            raise CommandError(
                ExitCode.USAGE, f"configuration error: {name}: its port is not a number"
            ) from None
    if getattr(args, "pool", None):
        settings = dataclasses.replace(settings, pool=args.pool)
    if settings.admin_key is None and _signs(args):
        raise CommandError(
            ExitCode.NOT_AUTHORIZED,
            f"{args.command} is an operator action: set ADMIN_KEY (or ADMIN_KEY_FILE) to the "
            "key the gateways hold",
        )
    return settings


async def run(argv: typing.Sequence[str] | None = None) -> int:
    """One command; returns its exit status (``ExitCode``), having written its result to
    stdout and any error as one line to stderr."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # a usage error or --help: argparse has said what it had to
        return exc.code if isinstance(exc.code, int) else int(ExitCode.USAGE)
    try:
        settings = _settings(args)
    except CommandError as exc:
        return _fail(exc.code, str(exc))
    try:
        ctx = context.Context(settings, output.Output(as_json=getattr(args, "json", False)))
    except ValueError:  # redis-py's reading of the URL; the message may quote it
        return _fail(ExitCode.USAGE, "configuration error: REDIS_URL: not a Redis URL it reads")
    try:
        return int(await args.run(ctx, args))
    except CommandError as exc:
        return _fail(exc.code, str(exc))
    except admin.ActionRefusedError as exc:
        return _fail(
            ExitCode.NOT_AUTHORIZED,
            f"the re-shard record is not vouched for ({exc}); if it predates this ADMIN_KEY, "
            "remove it with shardline reshard --forget",
        )
    except UNAVAILABLE_ERRORS as exc:
        return _fail(ExitCode.UNAVAILABLE, _unavailable(exc, settings))
    finally:
        with contextlib.suppress(Exception):
            await ctx.close()


def _signs(args: argparse.Namespace) -> bool:
    """Whether the command writes an operator action (the gateways want it signed)."""
    if args.command == "reshard":
        return bool(args.abort or args.forget or not args.dry_run)
    return args.command in {"drain", "restart-shard"}


def main() -> None:
    # The libraries log a lost connection as they give up; run() reports it as one line, and
    # without a handler of its own logging would print theirs to stderr as well.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        code = asyncio.run(run())
    except KeyboardInterrupt:  # run() has closed its connections on the way out
        code = _fail(ExitCode.INTERRUPTED, "interrupted")
    raise SystemExit(code)


if __name__ == "__main__":
    main()
