"""The commands that change something: ``replay``, ``drain``, ``undrain``, ``restart-shard``
and ``reshard``.

Each ends with one result (a JSON document with ``--json``, keys documented in
``docs/operations.md``), or raises :class:`~cli.exit_codes.CommandError` when it refuses or
what it waited for did not happen.
"""

from __future__ import annotations

import asyncio
import time
import typing

from cli import dead_letters, reports, reshard, state
from cli.exit_codes import CommandError, ExitCode
from shared import admin, fleet, status
from shared import reshard as shared_reshard

if typing.TYPE_CHECKING:
    import argparse

    from cli.context import Context

__all__ = ("drain", "replay", "reshard_run", "restart_shard", "undrain")


async def replay(ctx: Context, args: argparse.Namespace) -> ExitCode:
    exchange = ctx.names.events_exchange
    try:
        replayed, skipped = await dead_letters.replay(
            await ctx.channel(), ctx.names, args.limit, reason_contains=args.reason
        )
    except dead_letters.NoEventsExchangeError:
        raise CommandError(
            ExitCode.PROBLEM,
            f"there is no exchange {exchange} to replay to (start a gateway or worker of this "
            "namespace first); nothing was replayed",
        ) from None
    ctx.out.result(
        {"replayed": replayed, "skipped": skipped, "exchange": exchange},
        f"replayed {replayed} dead letters to {exchange}; left {skipped}",
    )
    return ExitCode.OK


async def _gateway_status(ctx: Context, gateway: str) -> status.GatewayStatus | None:
    raw = await ctx.redis.get(ctx.keys.gateway_status(gateway))
    return status.GatewayStatus.from_json(raw) if raw else None


async def drain(ctx: Context, args: argparse.Namespace) -> ExitCode:
    current = await _gateway_status(ctx, args.gateway)
    if current is None:
        raise CommandError(
            ExitCode.PROBLEM, f"no live gateway {args.gateway!r} in pool {ctx.settings.pool}"
        )
    if not current.leased:
        raise CommandError(
            ExitCode.PROBLEM, f"{args.gateway} holds fixed SHARD_IDS; it cannot hand shards over"
        )
    request = admin.sign(ctx.signing_key, ctx.keys.prefix, admin.DRAIN, gateway=args.gateway)
    await ctx.redis.hset(ctx.keys.drain_requests(), args.gateway, request)
    said = f"draining {args.gateway}: its shards move to the other gateways, resuming sessions"
    if not args.wait:
        ctx.out.result({"gateway": args.gateway, "state": "draining"}, said)
        return ExitCode.OK
    ctx.out.progress(said)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        current = await _gateway_status(ctx, args.gateway)
        held = len(current.shards) if current else 0
        ctx.out.progress(f"  {args.gateway} holds {held} shards")
        if held == 0:
            ctx.out.result({"gateway": args.gateway, "state": "drained"}, "drained")
            return ExitCode.OK
        await asyncio.sleep(2)
    raise CommandError(
        ExitCode.TIMED_OUT,
        "the gateway still holds shards; is another gateway running, and does it hold the "
        "same ADMIN_KEY (a refusal is in its log)?",
    )


async def undrain(ctx: Context, args: argparse.Namespace) -> ExitCode:
    # Taking a request back needs no signature: the gateway returns to what it does unasked.
    removed = await ctx.redis.hdel(ctx.keys.drain_requests(), args.gateway)
    ctx.out.result(
        {"gateway": args.gateway, "request_removed": bool(removed)},
        f"{args.gateway} takes shards again",
    )
    return ExitCode.OK


async def restart_shard(ctx: Context, args: argparse.Namespace) -> ExitCode:
    # Signed for the layout that serves now: after a re-shard it names no other shard.
    serving = {
        status.shard_count
        for status in await fleet.gateway_statuses(ctx.redis, ctx.keys)
        if args.shard in status.shards and status.publishes and status.shard_count is not None
    }
    if len(serving) != 1:
        raise CommandError(
            ExitCode.PROBLEM, f"no serving gateway holds shard {args.shard}; see shardline status"
        )
    shard_count = serving.pop()
    request = admin.sign(
        ctx.signing_key, ctx.keys.prefix, admin.RESTART_SHARD,
        shard=args.shard, shard_count=shard_count,
    )  # fmt: skip
    await ctx.redis.hset(ctx.keys.restart_requests(), str(args.shard), request)
    said = f"asked the gateway holding shard {args.shard} to restart it (it resumes)"
    doc = {"shard": args.shard, "shard_count": shard_count}
    if not args.wait:
        ctx.out.result({**doc, "state": "requested"}, said)
        return ExitCode.OK
    ctx.out.progress(said)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not await ctx.redis.hexists(ctx.keys.restart_requests(), str(args.shard)):
            ctx.out.result(
                {**doc, "state": "taken"},
                "taken by the gateway holding it (a refusal would be in its log)",
            )
            return ExitCode.OK
        await asyncio.sleep(1)
    await ctx.redis.hdel(ctx.keys.restart_requests(), str(args.shard))
    raise CommandError(
        ExitCode.TIMED_OUT, f"no gateway took the request; is shard {args.shard} running?"
    )


def _reshard_result(
    ctx: Context,
    action: str,
    state: str,
    record: shared_reshard.Reshard | None,
    text: str | None,
) -> ExitCode:
    ctx.out.result(
        {
            "action": action,
            "state": state,
            "source": record.source if record is not None else None,
            "target": record.target if record is not None else None,
        },
        text,
    )
    return ExitCode.OK


async def _reshard_abort(ctx: Context) -> ExitCode:
    # Before the retirement the old layout never stopped: the new one can be dropped.
    before = (shared_reshard.State.WARMING, shared_reshard.State.SWITCHING)
    record = await shared_reshard.load(ctx.redis, ctx.keys, ctx.signing_key)
    if record is None or record.state not in before:
        raise CommandError(
            ExitCode.PROBLEM, "no re-shard is warming or switching; nothing to abort"
        )
    aborted = shared_reshard.step(record, shared_reshard.State.ABORTED)
    if not await shared_reshard.transition(
        ctx.redis, ctx.keys, aborted, expected=before, admin_key=ctx.signing_key
    ):
        raise CommandError(
            ExitCode.PROBLEM, "the re-shard moved on meanwhile; run status and try again"
        )
    return _reshard_result(
        ctx, "abort", aborted.state.value, aborted,
        f"aborted: the {record.source}-shard layout keeps serving; the standby gateways close "
        "their sessions (restart them to try again)",
    )  # fmt: skip


async def _reshard_forget(ctx: Context) -> ExitCode:
    """Remove a finished or unreadable record (one signed with a key since rotated, say): a
    stale gateway of an old layout started later no longer learns it should hold nothing."""
    record: shared_reshard.Reshard | None = None
    try:
        record = await shared_reshard.load(ctx.redis, ctx.keys, ctx.signing_key)
    except admin.ActionRefusedError as exc:  # gateways holding the key ignore it too
        reason = str(exc)
    else:
        if record is not None and record.state in shared_reshard.IN_PROGRESS:
            raise CommandError(
                ExitCode.PROBLEM, f"a re-shard is {record.state.value}; finish it or --abort it"
            )
        reason = "finished" if record is not None else "none"
    await ctx.redis.delete(ctx.keys.reshard())
    return _reshard_result(
        ctx, "forget", "forgotten", record, f"forgot the re-shard record ({reason})"
    )


async def reshard_run(ctx: Context, args: argparse.Namespace) -> ExitCode:
    """Discord's zero-downtime re-shard, driven step by step (``cli.reshard.switch_over``)."""
    if args.forget:
        return await _reshard_forget(ctx)
    if args.abort:
        return await _reshard_abort(ctx)
    if args.dry_run:
        return await reports.reshard_plan(ctx, args)
    snap = await state.snapshot(
        ctx.redis, await ctx.channel(), ctx.keys, ctx.names, ctx.settings.pool
    )
    if snap.shard_count is None:
        raise CommandError(ExitCode.PROBLEM, "no gateway serves this pool; nothing to re-shard")
    underway = await shared_reshard.load(ctx.redis, ctx.keys, ctx.signing_key)
    carrying_on = underway is not None and underway.state in shared_reshard.IN_PROGRESS
    source = underway.source if carrying_on and underway is not None else snap.shard_count
    if source == args.shards:
        raise CommandError(ExitCode.PROBLEM, f"the pool already runs {args.shards} shards")
    ctx.out.progress(f"re-shard: {source} -> {args.shards} shards")
    try:
        await reshard.switch_over(
            ctx.redis, ctx.keys, source=source, target=args.shards,
            say=ctx.out.progress, timeout=args.timeout, admin_key=ctx.signing_key,
        )  # fmt: skip
    except reshard.ReshardTimeoutError as exc:
        raise CommandError(ExitCode.TIMED_OUT, str(exc)) from None
    except reshard.ReshardError as exc:
        raise CommandError(ExitCode.PROBLEM, str(exc)) from None
    # The last progress line ("done: ...") is the text.
    done = shared_reshard.Reshard(source, args.shards, shared_reshard.State.DONE)
    return _reshard_result(ctx, "run", done.state.value, done, None)
