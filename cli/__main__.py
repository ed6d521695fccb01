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

Reads AMQP_URL, REDIS_URL (or their _FILE forms), NAMESPACE and POOL like the services do.
Every action is one of these; nothing is evaluated. drain, restart-shard and reshard are signed
with ADMIN_KEY (or ADMIN_KEY_FILE), the key the gateways hold (``shared.admin``): gateways
refuse what it does not vouch for, so Redis access alone (a worker's) cannot steer them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
import typing

import aio_pika
import orjson

from cli import dead_letters, reshard, state, tables
from shared import admin, config, fleet, keys, redis_client, rpc, topology
from shared import reshard as shared_reshard

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc

    from shared.secret import Secret


class Context:
    def __init__(self, settings: config.OperatorSettings) -> None:
        self.settings = settings
        self.keys = keys.RedisKeys(settings.namespace, settings.pool)
        self.names = topology.Topology(settings.namespace)
        self.redis: aioredis.Redis = redis_client.connect(settings.redis_url)
        self.amqp: pika_abc.AbstractConnection | None = None

    async def channel(self) -> pika_abc.AbstractChannel:
        if self.amqp is None:
            self.amqp = await aio_pika.connect(self.settings.amqp_url.reveal())
        return await self.amqp.channel()

    @property
    def signing_key(self) -> Secret:
        """The admin key; :func:`run` checks it is set before any command that signs."""
        assert self.settings.admin_key is not None
        return self.settings.admin_key

    async def close(self) -> None:
        await self.redis.aclose()
        if self.amqp is not None:
            await self.amqp.close()


async def status(ctx: Context, _: argparse.Namespace) -> int:
    snap = await state.snapshot(
        ctx.redis, await ctx.channel(), ctx.keys, ctx.names, ctx.settings.pool
    )
    pool, namespace = ctx.settings.pool, ctx.settings.namespace
    out = [f"pool {pool} (namespace {namespace}): {snap.shard_count or '?'} shards"]
    out += ["", "GATEWAYS", tables.render(
        ["gateway", "state", "shards", "connected", "backlog", "seen (s ago)"],
        [[g["gateway"], g["state"], g["shards"], g["connected"], g["backlog"], g["seen"]]
         for g in snap.gateways],
    )]  # fmt: skip
    out += ["", "SHARDS", tables.render(
        ["shard", "gateway", "state", "latency ms", "guilds", "session age s", "seq", "session"],
        [[s["shard"], s["gateway"], s["state"], s["latency_ms"], s["guilds"],
          s["session_age_s"], s["seq"], s["session"]] for s in snap.shards],
    )]  # fmt: skip
    out += ["", "WORKERS", tables.render(
        ["worker", "group", "consumed", "handled", "failures", "dead-lettered", "duplicates"],
        [[w["worker"], w["group"], w["consumed"], w["handled"], w["failures"],
          w["dead_lettered"], w["duplicates"]] for w in snap.workers],
    )]  # fmt: skip
    out += ["", "QUEUES", tables.render(
        ["queue", "ready", "consumers"],
        [*snap.queues, (ctx.names.dead_letter_queue, snap.dead_letters, None)],
    )]  # fmt: skip
    print("\n".join(out))
    return 0


async def list_dead_letters(ctx: Context, args: argparse.Namespace) -> int:
    found = await dead_letters.inspect(await ctx.channel(), ctx.names, args.limit)
    print(tables.render(
        ["message id", "routing key", "bytes", "reason"],
        [[d["id"], d["routing_key"], d["bytes"], d["reason"]] for d in found],
    ))  # fmt: skip
    return 0


async def replay(ctx: Context, args: argparse.Namespace) -> int:
    replayed, skipped = await dead_letters.replay(
        await ctx.channel(), ctx.names, args.limit, reason_contains=args.reason
    )
    print(f"replayed {replayed} dead letters to {ctx.names.events_exchange}; left {skipped}")
    return 0


async def _gateway_status(ctx: Context, gateway: str) -> dict[str, typing.Any] | None:
    raw = await ctx.redis.get(ctx.keys.gateway_status(gateway))
    return orjson.loads(raw) if raw else None


async def drain(ctx: Context, args: argparse.Namespace) -> int:
    current = await _gateway_status(ctx, args.gateway)
    if current is None:
        print(f"shardline: no live gateway {args.gateway!r} in pool {ctx.settings.pool}")
        return 1
    if not current.get("leased"):
        print(f"shardline: {args.gateway} holds fixed SHARD_IDS; it cannot hand shards over")
        return 1
    request = admin.sign(ctx.signing_key, ctx.keys.prefix, admin.DRAIN, gateway=args.gateway)
    await ctx.redis.hset(ctx.keys.drain_requests(), args.gateway, request)
    print(f"draining {args.gateway}: its shards move to the other gateways, resuming sessions")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        current = await _gateway_status(ctx, args.gateway)
        held = len(current["shards"]) if current else 0
        print(f"  {args.gateway} holds {held} shards")
        if held == 0:
            print("drained")
            return 0
        await asyncio.sleep(2)
    print(
        "shardline: the gateway still holds shards; is another gateway running, and does it "
        "hold the same ADMIN_KEY (a refusal is in its log)?"
    )
    return 1


async def undrain(ctx: Context, args: argparse.Namespace) -> int:
    # Taking a request back needs no signature: the gateway returns to what it does unasked.
    await ctx.redis.hdel(ctx.keys.drain_requests(), args.gateway)
    print(f"{args.gateway} takes shards again")
    return 0


async def restart_shard(ctx: Context, args: argparse.Namespace) -> int:
    # Signed for the layout that serves now: after a re-shard it names no other shard.
    serving = {
        status["shard_count"]
        for status in await fleet.gateway_statuses(ctx.redis, ctx.keys)
        if str(args.shard) in status.get("shards", {})
        and not status.get("standby")
        and not status.get("retired")
    }
    if len(serving) != 1:
        print(f"shardline: no serving gateway holds shard {args.shard}; see shardline status")
        return 1
    request = admin.sign(
        ctx.signing_key, ctx.keys.prefix, admin.RESTART_SHARD,
        shard=args.shard, shard_count=serving.pop(),
    )  # fmt: skip
    await ctx.redis.hset(ctx.keys.restart_requests(), str(args.shard), request)
    print(f"asked the gateway holding shard {args.shard} to restart it (it resumes)")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not await ctx.redis.hexists(ctx.keys.restart_requests(), str(args.shard)):
            print("taken by the gateway holding it (a refusal would be in its log)")
            return 0
        await asyncio.sleep(1)
    await ctx.redis.hdel(ctx.keys.restart_requests(), str(args.shard))
    print(f"shardline: no gateway took the request; is shard {args.shard} running?")
    return 1


async def reshard_plan(ctx: Context, args: argparse.Namespace) -> int:
    snap = await state.snapshot(
        ctx.redis, await ctx.channel(), ctx.keys, ctx.names, ctx.settings.pool
    )
    serving = [g["gateway"] for g in snap.gateways if g["state"] == "serving"]
    planned = await reshard.plan(
        ctx.redis, ctx.keys, current=snap.shard_count, target=args.shards,
        max_concurrency=args.max_concurrency, gateways=serving,
    )  # fmt: skip
    print(f"re-shard plan (dry run): {planned.current or '?'} -> {planned.target} shards")
    remaining = planned.session_starts_remaining
    print(f"  session starts needed: {planned.session_starts_needed} "
          f"(remaining today: {'unknown' if remaining is None else remaining})")  # fmt: skip
    print(f"  identify time at max_concurrency {planned.max_concurrency}: "
          f"at least {planned.identify_seconds:.0f} s")  # fmt: skip
    if planned.guilds_per_shard is not None:
        print(f"  guilds per shard: {planned.guilds_per_shard:.0f}")
    print(tables.render(
        ["gateway", "new shards"],
        [[g, f"{r.start}-{r.stop - 1}" if len(r) else "none"]
         for g, r in zip(planned.gateways, planned.ranges, strict=True)],
    ))  # fmt: skip
    for problem in planned.problems:
        print(f"  problem: {problem}")
    return 1 if planned.problems else 0


async def _reshard_abort(ctx: Context) -> int:
    # Before the retirement the old layout never stopped: the new one can be dropped.
    before = (shared_reshard.State.WARMING, shared_reshard.State.SWITCHING)
    record = await shared_reshard.load(ctx.redis, ctx.keys, ctx.signing_key)
    if record is None or record.state not in before:
        print("shardline: no re-shard is warming or switching; nothing to abort")
        return 1
    aborted = shared_reshard.step(record, shared_reshard.State.ABORTED)
    if not await shared_reshard.transition(
        ctx.redis, ctx.keys, aborted, expected=before, admin_key=ctx.signing_key
    ):
        print("shardline: the re-shard moved on meanwhile; run status and try again")
        return 1
    print(f"aborted: the {record.source}-shard layout keeps serving; the standby "
          f"gateways close their sessions (restart them to try again)")  # fmt: skip
    return 0


async def _reshard_forget(ctx: Context) -> int:
    """Remove a finished or unreadable record (one signed with a key since rotated, say): a
    stale gateway of an old layout started later no longer learns it should hold nothing."""
    try:
        record = await shared_reshard.load(ctx.redis, ctx.keys, ctx.signing_key)
    except admin.ActionRefusedError as exc:  # gateways holding the key ignore it too
        reason = str(exc)
    else:
        if record is not None and record.state in shared_reshard.IN_PROGRESS:
            print(f"shardline: a re-shard is {record.state.value}; finish it or --abort it")
            return 1
        reason = "finished" if record is not None else "none"
    await ctx.redis.delete(ctx.keys.reshard())
    print(f"forgot the re-shard record ({reason})")
    return 0


async def reshard_run(ctx: Context, args: argparse.Namespace) -> int:
    """Discord's zero-downtime re-shard, driven step by step (``cli.reshard.switch_over``)."""
    if args.shards < 1:
        print("shardline: --shards must be at least 1")
        return 2
    if args.forget:
        return await _reshard_forget(ctx)
    if args.abort:
        return await _reshard_abort(ctx)
    if args.dry_run:
        return await reshard_plan(ctx, args)
    snap = await state.snapshot(
        ctx.redis, await ctx.channel(), ctx.keys, ctx.names, ctx.settings.pool
    )
    if snap.shard_count is None:
        print("shardline: no gateway serves this pool; nothing to re-shard")
        return 1
    underway = await shared_reshard.load(ctx.redis, ctx.keys, ctx.signing_key)
    carrying_on = underway is not None and underway.state in shared_reshard.IN_PROGRESS
    source = underway.source if carrying_on and underway is not None else snap.shard_count
    if source == args.shards:
        print(f"shardline: the pool already runs {args.shards} shards")
        return 1
    print(f"re-shard: {source} -> {args.shards} shards")
    try:
        await reshard.switch_over(
            ctx.redis, ctx.keys, source=source, target=args.shards,
            say=lambda line: print(line, flush=True), timeout=args.timeout,
            admin_key=ctx.signing_key,
        )  # fmt: skip
    except reshard.ReshardError as exc:
        print(f"shardline: {exc}")
        return 1
    return 0


async def ask(ctx: Context, args: argparse.Namespace) -> int:
    """Ask every live gateway and/or worker a registered question (``stats`` is built in)."""
    if ctx.amqp is None:
        ctx.amqp = await aio_pika.connect(ctx.settings.amqp_url.reveal())
    channel = await ctx.amqp.channel(publisher_confirms=True, on_return_raises=True)
    endpoint = rpc.Endpoint(channel, ctx.names, ctx.settings.pool, f"cli-{secrets.token_hex(4)}")
    await endpoint.start()
    try:
        roles = (args.role,) if args.role else ("gateway", "worker")
        answers = await fleet.ask(
            endpoint, ctx.redis, ctx.keys, args.question, roles=roles, timeout=args.timeout
        )
    finally:
        await endpoint.close()
    rows = [
        (a.role, a.target, orjson.dumps(a.value).decode() if a.ok else f"error: {a.error}")
        for a in answers
    ]
    print(tables.render(("role", "process", "answer"), rows) if rows else "no live process")
    return 0 if all(a.ok for a in answers) else 1


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="shardline", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="gateways, shards, workers, queues").set_defaults(run=status)
    listing = commands.add_parser("dead-letters", help="what is dead-lettered, and why")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=list_dead_letters)
    again = commands.add_parser("replay", help="put dead letters back")
    again.add_argument("--limit", type=int, default=100)
    again.add_argument("--reason", help="only those whose reason contains this text")
    again.set_defaults(run=replay)
    draining = commands.add_parser("drain", help="hand a gateway's shards to the others")
    draining.add_argument("gateway")
    draining.add_argument("--wait", action="store_true", help="until it holds no shard")
    draining.add_argument("--timeout", type=float, default=300.0)
    draining.set_defaults(run=drain)
    back = commands.add_parser("undrain", help="let a drained gateway take shards again")
    back.add_argument("gateway")
    back.set_defaults(run=undrain)
    restart = commands.add_parser("restart-shard", help="restart one shard (it resumes)")
    restart.add_argument("shard", type=int)
    restart.add_argument("--wait", action="store_true")
    restart.add_argument("--timeout", type=float, default=30.0)
    restart.set_defaults(run=restart_shard)
    planning = commands.add_parser("reshard-plan", help="what a new shard count would take")
    planning.add_argument("--shards", type=int, required=True)
    planning.add_argument("--max-concurrency", type=int, default=1)
    planning.set_defaults(run=reshard_plan)
    moving = commands.add_parser("reshard", help="move to a new shard count without downtime")
    moving.add_argument("--shards", type=int, required=True)
    moving.add_argument("--max-concurrency", type=int, default=1, help="for --dry-run")
    moving.add_argument("--dry-run", action="store_true", help="print the plan only")
    moving.add_argument("--abort", action="store_true", help="call off a warming re-shard")
    moving.add_argument(
        "--forget", action="store_true", help="remove a finished or unreadable re-shard record"
    )
    moving.add_argument("--timeout", type=float, default=3600.0)
    moving.set_defaults(run=reshard_run)
    asking = commands.add_parser("ask", help="a fleet request to every gateway and worker")
    asking.add_argument("question", help="a registered question, e.g. stats")
    asking.add_argument("--role", choices=sorted(fleet.ROLES))
    asking.add_argument("--timeout", type=float, default=fleet.DEFAULT_TIMEOUT)
    asking.set_defaults(run=ask)
    return root


async def run(argv: typing.Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = config.load_or_exit(config.OperatorSettings.from_env, program="shardline")
    if settings.admin_key is None and _signs(args):
        print(
            f"shardline: {args.command} is an operator action: set ADMIN_KEY (or ADMIN_KEY_FILE) "
            "to the key the gateways hold",
            file=sys.stderr,
        )
        return 2
    ctx = Context(settings)
    try:
        return int(await args.run(ctx, args))
    except admin.ActionRefusedError as exc:
        print(
            f"shardline: the re-shard record is not vouched for ({exc}); if it predates this "
            "ADMIN_KEY, remove it with shardline reshard --forget",
            file=sys.stderr,
        )
        return 2
    except redis_client.REDIS_ERRORS as exc:
        print(f"shardline: Redis unreachable ({type(exc).__name__})", file=sys.stderr)
        return 2
    except (aio_pika.exceptions.AMQPError, OSError) as exc:
        print(f"shardline: RabbitMQ unreachable ({type(exc).__name__})", file=sys.stderr)
        return 2
    finally:
        with contextlib.suppress(Exception):
            await ctx.close()


def _signs(args: argparse.Namespace) -> bool:
    """Whether the command writes an operator action (the gateways want it signed)."""
    if args.command == "reshard":
        return args.abort or args.forget or not args.dry_run
    return args.command in {"drain", "restart-shard"}


def main() -> None:
    raise SystemExit(asyncio.run(run()))


if __name__ == "__main__":
    main()
