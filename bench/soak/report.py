"""What a soak run prints: the schedule as played, a table per fault kind, the findings, the
figure of throughput and latency over time with the faults marked, and the last line."""

from __future__ import annotations

import statistics
import typing

if typing.TYPE_CHECKING:
    import pathlib

    from bench.soak import checker, nemesis
    from bench.soak import load as load_module


def recovery(fault: nemesis.Fault, verdict: checker.Verdict) -> float | None:
    """Seconds from the fault's end until every command sent while it lasted was answered
    (0 if they all were before it ended; None if none was sent meanwhile)."""
    if fault.started is None or fault.ended is None:
        return None
    during = [
        sent_at + took
        for sent_at, took in verdict.latency
        if fault.started <= sent_at <= fault.ended
    ]
    if not during:
        return None
    return max(0.0, max(during) - fault.ended)


def quiet_late(verdict: checker.Verdict, faults: list[nemesis.Fault], margin: float = 5.0) -> str:
    """How many late interactions were sent with no fault under way (nor ended ``margin`` s
    before): what is late then is the machine, not a fault."""
    windows = [
        (f.started, f.ended + margin)
        for f in faults
        if f.started is not None and f.ended is not None
    ]
    quiet = [s for s, _ in verdict.late if not any(a <= s.at <= b for a, b in windows)]
    took = sorted(t for s, t in verdict.late if s in quiet and t is not None)
    worst = f", called back after {took[0]:.2f}-{took[-1]:.2f} s" if took else ""
    return (
        f"soak: {len(quiet)} of {len(verdict.late)} late interactions were sent with no fault "
        f"under way or ended within {margin:g} s{worst}"
    )


def fault_table(faults: list[nemesis.Fault], verdict: checker.Verdict) -> list[str]:
    kinds: dict[str, list[float | None]] = {}
    for fault in faults:
        kinds.setdefault(fault.kind, []).append(recovery(fault, verdict))
    lines = [f"{'fault':<16}{'count':>6}{'recovery p50 s':>16}{'recovery max s':>16}"]
    for kind, values in sorted(kinds.items()):
        known = [v for v in values if v is not None]
        p50 = f"{statistics.median(known):.1f}" if known else "-"
        top = f"{max(known):.1f}" if known else "-"
        lines.append(f"{kind:<16}{len(values):>6}{p50:>16}{top:>16}")
    return lines


def findings_document(
    verdict: checker.Verdict, faults: list[nemesis.Fault], started: float
) -> dict[str, typing.Any]:
    """Every finding with its time (seconds after the load started), beside the faults as they
    were played: what ``findings.json`` in the log directory holds, to read a long run by."""

    def sent(item: load_module.Sent) -> dict[str, typing.Any]:
        return {"kind": item.kind, "id": item.id, "at": round(item.at - started, 3)}

    return {
        "faults": [
            {
                "kind": f.kind, "at": f.at, "duration": f.duration, "pick": f.pick,
                "started": None if f.started is None else round(f.started - started, 3),
                "ended": None if f.ended is None else round(f.ended - started, 3),
                "note": f.note,
            }
            for f in faults
        ],
        "lost": [sent(s) for s in verdict.lost],
        "twice": [
            {**sent(verdict.sent_by_id[i]), "times": len(calls),
             "calls": [{"at": round(c.at - started, 3), "method": c.method, "route": c.route}
                       for c in calls]}
            for i, calls in verdict.twice.items()
        ],
        "late": [{**sent(s), "took": t} for s, t in verdict.late],
        "excused": [sent(s) for s in verdict.excused],
        "broker_down": [sent(s) for s in verdict.broker_down],
        "rate_limited": [{"at": round(at - started, 3), "route": r} for at, r in verdict.rate_limited_calls],
    }  # fmt: skip


def findings(verdict: checker.Verdict, started: float) -> list[str]:
    lines = [
        f"lost: {sent.kind} {sent.id} sent at {sent.at - started:.1f}s"
        for sent in verdict.lost[:10]
    ]
    for event_id, calls in list(verdict.twice.items())[:10]:
        asked = verdict.sent_by_id[event_id]
        how = ", ".join(f"{c.method} {c.route} at {c.at - started:.1f}s" for c in calls)
        lines.append(f"twice: {asked.kind} {event_id} sent at {asked.at - started:.1f}s: {how}")
    for sent, took in verdict.late[:10]:
        when = "never" if took is None else f"after {took:.2f}s"
        lines.append(
            f"late: {sent.kind} {sent.id} sent at {sent.at - started:.1f}s, called back {when}"
        )
    for at, route in verdict.rate_limited_calls[:10]:
        lines.append(f"429: {route} at {at - started:.1f}s")
    for exit_ in verdict.unexpected_exits:
        last = exit_.log.strip().splitlines()[-3:]
        lines.append(f"exit: {exit_.name} pid {exit_.pid} code {exit_.code} at "
                     f"{exit_.at - started:.1f}s: {' | '.join(last)}")  # fmt: skip
    for name, (slope, first, last_mib) in sorted(verdict.rss_slopes.items()):
        lines.append(f"rss: {name} {first:.0f} -> {last_mib:.0f} MiB, {slope:+.2f} MiB/min")
    return lines


def figure(
    path: pathlib.Path,
    verdict: checker.Verdict,
    faults: list[nemesis.Fault],
    started: float,
    title: str,
) -> None:
    import matplotlib as mpl  # noqa: PLC0415 - only when a figure is asked for

    mpl.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415 - after the backend is chosen

    answered: dict[int, int] = {}
    latencies: dict[int, list[float]] = {}
    for sent_at, took in verdict.latency:
        answered[int(sent_at + took - started)] = answered.get(int(sent_at + took - started), 0) + 1
        latencies.setdefault(int(sent_at - started), []).append(took * 1000)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 6))
    seconds = sorted(answered)
    top.plot(seconds, [answered[s] for s in seconds], lw=0.8, color="black")
    top.set_ylabel("answers / s")
    seconds = sorted(latencies)
    bottom.plot(seconds, [statistics.median(latencies[s]) for s in seconds], lw=0.8, label="p50")
    bottom.plot(seconds, [max(latencies[s]) for s in seconds], lw=0.8, label="max")
    bottom.set_yscale("log")
    bottom.set_ylabel("command latency ms (by send time)")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="upper right")
    colours = plt.get_cmap("tab20")
    kinds = sorted({f.kind for f in faults})
    for fault in faults:
        if fault.started is None or fault.ended is None:
            continue
        colour = colours(kinds.index(fault.kind) % 20)
        for axis in (top, bottom):
            axis.axvspan(fault.started - started, max(fault.ended, fault.started + 0.3) - started,
                         color=colour, alpha=0.3)  # fmt: skip
        top.text(fault.started - started, top.get_ylim()[1] * 0.95, fault.kind, rotation=90,
                 fontsize=6, va="top")  # fmt: skip
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
