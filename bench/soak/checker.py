"""The checker: what the emulated Discord received, and nothing the platform says.

Ground truth is the emulator's record of REST calls: an answer is a successful call whose body
carries ``soak-answer <event id>``; an interaction's deadline is judged by when its callback
reached the emulator. Identify violations and 429s are counted by the emulator too. Process
exits and RSS come from the operating system.
"""

from __future__ import annotations

import dataclasses
import re
import typing

import orjson

from bench.soak import plugin

if typing.TYPE_CHECKING:
    from bench.soak import load as load_module
    from bench.soak import nemesis
    from bench.soak import system as system_module
    from playground.discord import records

#: Discord's deadline for an interaction's first response (Receiving and Responding).
INTERACTION_DEADLINE: typing.Final = 3.0
#: An interaction the emulator could not hand to any gateway within this many seconds of
#: creating it (its shard was down: a gateway killed, a lease not yet taken over) cannot be
#: answered in time by any bot; the platform promises 3 s from the gateway's receipt, and
#: defers 2 s after it. Such interactions are counted apart, as excused, not as late or lost.
DELIVERY_EXCUSE: typing.Final = 1.0
#: An interaction a gateway received while RabbitMQ was down (from the kill until the node
#: was up again, plus this many seconds for the clients to reconnect) cannot reach a worker
#: within 3 s: gateway -> broker -> worker is the architecture. Counted apart too.
BROKER_GRACE: typing.Final = 2.0
#: ...and from this many seconds before the kill: its publish or its delivery was still on the
#: link (up to 400 ms each way when latency is added) and died with the node; the gateway
#: publishes it again once the broker is back (seeds 330917: 85.1 s and 457.4-457.9 s).
BROKER_IN_FLIGHT: typing.Final = 1.0
#: ...and, with latency added on the link when the node came back, this many round trips more:
#: the fewest any AMQP consumer needs before a message reaches it again (TCP's handshake; the
#: AMQP 0-9-1 connection negotiation, Connection.Start/Start-Ok, Tune/Tune-Ok, Open/Open-Ok;
#: Channel.Open/Open-Ok; Basic.Consume/Consume-Ok: six), and the publish and the delivery
#: one way each (one more). Seed 555678: 12 interactions 2.0-5.4 s after a restart with 381 ms
#: added each way, when 7 round trips take 5.3 s.
RECONNECT_ROUND_TRIPS: typing.Final = 7
_ANSWER: typing.Final = re.compile(rf"{plugin.ANSWER} (\d+)".encode())
_CALLBACK: typing.Final = re.compile(r"/interactions/(\d+)/[^/]+/callback")


@dataclasses.dataclass(slots=True)
class Verdict:
    sent: int
    answered: int
    lost: list[load_module.Sent]
    twice: dict[int, list[records.RestCallRecord]]
    """Event id: every successful call that answered it (more than one)."""
    late: list[tuple[load_module.Sent, float | None]]
    """Interactions whose first callback was refused or came after 3 s (None: never came)."""
    excused: list[load_module.Sent]
    """Interactions handed to a gateway more than DELIVERY_EXCUSE s after their creation."""
    broker_down: list[load_module.Sent]
    """Interactions a gateway received while RabbitMQ was down."""
    identify_violations: int
    rate_limited: int
    rate_limited_calls: list[tuple[float, str]]
    """(when, route) of each 429."""
    unexpected_exits: list[system_module.Exit]
    rss_slopes: dict[str, tuple[float, float, float]]
    """Process (name pid): (MiB per minute, first MiB, last MiB)."""
    latency: list[tuple[float, float]]
    """(sent at, seconds until answered) of every answered command."""
    sent_by_id: dict[int, load_module.Sent]
    """Every command sent, by the id of the event that asked."""

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.twice or self.late or self.identify_violations or self.rate_limited
        )

    def excuses(self) -> str:
        return (
            f"soak: excused, not counted as late or lost: {len(self.excused)} interactions "
            f"reached a gateway over {DELIVERY_EXCUSE:g} s after Discord created them (shard "
            f"down), {len(self.broker_down)} reached one while RabbitMQ was down"
        )

    def line(self) -> str:
        return (
            f"soak: {self.sent} sent, {self.answered} answered, {len(self.lost)} lost, "
            f"{len(self.twice)} twice, {len(self.late)} late interactions, "
            f"{self.identify_violations} identify violations, {self.rate_limited} 429s"
        )


def answers(
    rest: typing.Iterable[records.RestCallRecord],
) -> dict[int, list[records.RestCallRecord]]:
    """Event id: each successful REST call answering it, in the order they arrived."""
    found: dict[int, list[records.RestCallRecord]] = {}
    for call in rest:
        if call.status >= 300 or call.body is None:
            continue
        body = call.body if isinstance(call.body, bytes) else orjson.dumps(call.body)
        for match in _ANSWER.finditer(body):
            found.setdefault(int(match.group(1)), []).append(call)
    return found


def first_callbacks(
    rest: typing.Iterable[records.RestCallRecord],
) -> dict[int, records.RestCallRecord]:
    found: dict[int, records.RestCallRecord] = {}
    for call in rest:
        if call.method == "POST" and (match := _CALLBACK.search(call.path)):
            found.setdefault(int(match.group(1)), call)
    return found


def rss_slope(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares MiB per minute over the samples after the first quarter (warm-up)."""
    kept = samples[len(samples) // 4 :]
    if len(kept) < 10 or kept[-1][0] - kept[0][0] < 30:
        return None
    n = len(kept)
    mean_t = sum(t for t, _ in kept) / n
    mean_m = sum(m for _, m in kept) / n
    var = sum((t - mean_t) ** 2 for t, _ in kept)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in kept)
    return cov / var * 60 if var else None


def outage_windows(faults: typing.Iterable[nemesis.Fault]) -> list[tuple[float, float]]:
    """(from, until) of each RabbitMQ restart as played, the interactions a gateway received
    meanwhile being excused: ``until`` is the node's return plus ``BROKER_GRACE`` and, with
    latency added on the link then, ``RECONNECT_ROUND_TRIPS`` round trips of it."""
    played = [
        (f.kind, f.started, f.ended, f.delay)
        for f in faults
        if f.started is not None and f.ended is not None
    ]
    outages = []
    for kind, start, up, _ in played:
        if kind != "rabbit-restart":
            continue
        delay = max(
            (d for k, s, e, d in played if k == "broker-latency" and s <= up <= e), default=0.0
        )
        outages.append(
            (start - BROKER_IN_FLIGHT, up + BROKER_GRACE + RECONNECT_ROUND_TRIPS * 2 * delay)
        )
    return outages


def check(
    system: system_module.System,
    load: load_module.Load,
    broker_outages: typing.Sequence[tuple[float, float]] = (),
) -> Verdict:
    """``broker_outages``: what :func:`outage_windows` makes of the faults as played."""
    recorded = system.discord.records
    rest = list(recorded.rest)
    answered = answers(rest)
    callbacks = first_callbacks(rest)
    excused = [
        s
        for s in load.sent
        if s.interaction is not None
        and system.delivered.get(s.id, float("inf")) - s.interaction.created_at_wall
        > DELIVERY_EXCUSE
    ]
    broker_down = [
        s
        for s in load.sent
        if s.interaction is not None
        and s not in excused
        and any(
            start <= system.delivered.get(s.id, 0.0) <= until for start, until in broker_outages
        )
    ]
    excused_ids = {s.id for s in excused} | {s.id for s in broker_down}
    lost = [s for s in load.sent if s.id not in answered and s.id not in excused_ids]
    twice = {s.id: answered[s.id] for s in load.sent if len(answered.get(s.id, ())) > 1}
    late: list[tuple[load_module.Sent, float | None]] = []
    for sent in load.sent:
        if sent.interaction is None or sent.id in excused_ids:
            continue
        call = callbacks.get(sent.id)
        took = None if call is None else call.at - sent.interaction.created_at_wall
        if call is None or call.status >= 300 or (took is not None and took > INTERACTION_DEADLINE):
            late.append((sent, took))
    slopes = {}
    for proc in system.procs:
        slope = rss_slope(proc.rss)
        if slope is not None:
            slopes[f"{proc.name} ({proc.popen.pid})"] = (slope, proc.rss[0][1], proc.rss[-1][1])
    return Verdict(
        sent=len(load.sent),
        answered=sum(1 for s in load.sent if s.id in answered),
        lost=lost,
        twice=twice,
        late=late,
        excused=excused,
        broker_down=broker_down,
        identify_violations=len(recorded.identify_violations) + recorded.token_resets,
        rate_limited=len(recorded.rate_limited),
        rate_limited_calls=[(c.at, c.route) for c in recorded.rate_limited],
        unexpected_exits=[e for e in system.exits if not e.expected],
        rss_slopes=slopes,
        latency=[(s.at, answered[s.id][0].at - s.at) for s in load.sent if s.id in answered],
        sent_by_id={s.id: s for s in load.sent},
    )
