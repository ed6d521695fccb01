"""The read commands: ``status``, ``dead-letters``, ``reshard-plan`` and ``ask``.

Each builds one document (what ``--json`` prints; its keys are documented in
``docs/operations.md`` and checked by ``tests/cli``) and renders the text from it, so that the
two never say different things.
"""

from __future__ import annotations

import secrets
import typing

import orjson

from cli import dead_letters, reshard, state, tables
from cli.exit_codes import ExitCode
from shared import fleet, rpc

if typing.TYPE_CHECKING:
    import argparse

    from cli.context import Context

__all__ = ("ask", "list_dead_letters", "reshard_plan", "status")

Document = dict[str, typing.Any]

#: The columns of a worker's status that ``status`` shows (its status holds more).
WORKER_FIELDS: typing.Final = (
    "worker", "group", "consumed", "handled", "failures", "dead_lettered", "duplicates",
)  # fmt: skip


async def _snapshot(ctx: Context) -> state.Snapshot:
    return await state.snapshot(
        ctx.redis, await ctx.channel(), ctx.keys, ctx.names, ctx.settings.pool
    )


async def status(ctx: Context, _: argparse.Namespace) -> ExitCode:
    snap = await _snapshot(ctx)
    doc: Document = {
        "pool": ctx.settings.pool,
        "namespace": ctx.settings.namespace,
        "shard_count": snap.shard_count,
        "gateways": [
            {
                "gateway": g["gateway"],
                "state": g["state"],
                "shards": g["shards"],
                "connected": g["connected"],
                "backlog": g["backlog"],
                "breakers": g.get("breakers") or {},
                "seen_s_ago": g["seen"],
                "session_start_wait_s": g["session_start_wait"],
            }
            for g in snap.gateways
        ],
        "shards": snap.shards,
        "workers": [
            {**{k: w.get(k) for k in WORKER_FIELDS}, "breakers": w.get("breakers") or {}}
            for w in snap.workers
        ],
        "queues": [
            {"queue": name, "ready": ready, "consumers": consumers}
            for name, ready, consumers in snap.queues
        ],
        "dead_letters": {"queue": ctx.names.dead_letter_queue, "ready": snap.dead_letters},
    }
    ctx.out.result(doc, _status_text(doc))
    return ExitCode.OK


def _status_text(doc: Document) -> str:
    count = doc["shard_count"] or "?"
    out = [f"pool {doc['pool']} (namespace {doc['namespace']}): {count} shards"]
    out += ["", "GATEWAYS", tables.render(
        ["gateway", "state", "shards", "connected", "backlog", "breakers", "seen (s ago)"],
        [[g["gateway"], g["state"], g["shards"], g["connected"], g["backlog"],
          _breakers(g["breakers"]), g["seen_s_ago"]] for g in doc["gateways"]],
    )]  # fmt: skip
    out += [f"{g['gateway']}: too few session starts left to IDENTIFY; its shards wait "
            f"{g['session_start_wait_s']} s for Discord's reset"
            for g in doc["gateways"] if g["session_start_wait_s"] is not None]  # fmt: skip
    out += ["", "SHARDS", tables.render(
        ["shard", "gateway", "state", "latency ms", "guilds", "session age s", "seq", "session"],
        [[s["shard"], s["gateway"], s["state"], s["latency_ms"], s["guilds"],
          s["session_age_s"], s["seq"], s["session"]] for s in doc["shards"]],
    )]  # fmt: skip
    out += ["", "WORKERS", tables.render(
        ["worker", "group", "consumed", "handled", "failures", "dead-lettered", "duplicates",
         "breakers"],
        [[*(w[k] for k in WORKER_FIELDS), _breakers(w["breakers"])] for w in doc["workers"]],
    )]  # fmt: skip
    dead = doc["dead_letters"]
    out += ["", "QUEUES", tables.render(
        ["queue", "ready", "consumers"],
        [*([q["queue"], q["ready"], q["consumers"]] for q in doc["queues"]),
         [dead["queue"], dead["ready"], None]],
    )]  # fmt: skip
    return "\n".join(out)


def _breakers(states: typing.Mapping[str, str]) -> str:
    """``closed`` when all are, else the others by name (``redis open``)."""
    away = [f"{name} {state}" for name, state in sorted(states.items()) if state != "closed"]
    return ", ".join(away) or ("closed" if states else "-")


async def list_dead_letters(ctx: Context, args: argparse.Namespace) -> ExitCode:
    found = await dead_letters.inspect(await ctx.channel(), ctx.names, args.limit)
    doc: Document = {"queue": ctx.names.dead_letter_queue, "dead_letters": found}
    ctx.out.result(doc, tables.render(
        ["message id", "routing key", "bytes", "reason", "error"],
        [[d["id"], d["routing_key"], d["bytes"], d["reason"], d["error"]] for d in found],
    ))  # fmt: skip
    return ExitCode.OK


async def reshard_plan(ctx: Context, args: argparse.Namespace) -> ExitCode:
    snap = await _snapshot(ctx)
    serving = [g["gateway"] for g in snap.gateways if g["state"] == "serving"]
    planned = await reshard.plan(
        ctx.redis, ctx.keys, current=snap.shard_count, target=args.shards,
        max_concurrency=args.max_concurrency, gateways=serving,
    )  # fmt: skip
    doc: Document = {
        "current": planned.current,
        "target": planned.target,
        "max_concurrency": planned.max_concurrency,
        "session_starts_needed": planned.session_starts_needed,
        "session_starts_remaining": planned.session_starts_remaining,
        "identify_seconds": planned.identify_seconds,
        "guilds_per_shard": planned.guilds_per_shard,
        "assignments": [
            {"gateway": g, "first": r.start if r else None, "last": r.stop - 1 if r else None}
            for g, r in zip(planned.gateways, planned.ranges, strict=True)
        ],
        "problems": planned.problems,
    }
    ctx.out.result(doc, _plan_text(doc))
    return ExitCode.PROBLEM if planned.problems else ExitCode.OK


def _plan_text(doc: Document) -> str:
    remaining = doc["session_starts_remaining"]
    out = [f"re-shard plan (dry run): {doc['current'] or '?'} -> {doc['target']} shards"]
    out.append(f"  session starts needed: {doc['session_starts_needed']} "
               f"(remaining today: {'unknown' if remaining is None else remaining})")  # fmt: skip
    out.append(f"  identify time at max_concurrency {doc['max_concurrency']}: "
               f"at least {doc['identify_seconds']:.0f} s")  # fmt: skip
    if doc["guilds_per_shard"] is not None:
        out.append(f"  guilds per shard: {doc['guilds_per_shard']:.0f}")
    out.append(tables.render(
        ["gateway", "new shards"],
        [[a["gateway"], "none" if a["first"] is None else f"{a['first']}-{a['last']}"]
         for a in doc["assignments"]],
    ))  # fmt: skip
    out += [f"  problem: {problem}" for problem in doc["problems"]]
    return "\n".join(out)


async def ask(ctx: Context, args: argparse.Namespace) -> ExitCode:
    """Ask every live gateway and/or worker a registered question (``stats`` is built in)."""
    connection = await ctx.connection()
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    endpoint = rpc.Endpoint(channel, ctx.names, ctx.settings.pool, f"cli-{secrets.token_hex(4)}")
    await endpoint.start()
    try:
        roles = (args.role,) if args.role else ("gateway", "worker")
        answers = await fleet.ask(
            endpoint, ctx.redis, ctx.keys, args.question, roles=roles, timeout=args.timeout
        )
    finally:
        await endpoint.close()
    doc: Document = {
        "question": args.question,
        "answers": [
            {
                "role": a.role,
                "process": a.target,
                "ok": a.ok,
                "value": a.value,
                "error": None
                if a.error is None
                else {"type": type(a.error).__name__, "message": str(a.error)},
            }
            for a in answers
        ],
    }
    rows = [
        (a["role"], a["process"],
         orjson.dumps(a["value"]).decode() if a["ok"] else f"error: {a['error']['message']}")
        for a in doc["answers"]
    ]  # fmt: skip
    ctx.out.result(doc, tables.render(("role", "process", "answer"), rows) if rows else
                   "no live process")  # fmt: skip
    return ExitCode.OK if all(a.ok for a in answers) else ExitCode.PROBLEM
