"""What the event manager costs per event on a worker, against hikari's own dispatch.

    .venv/bin/python -m bench.event_manager [--events 20000]

A MESSAGE_CREATE payload with one listener, no server involved (CPU only), in the same run:

* the worker's path: build the typed event (hikari's factories), resolve waiters, find its
  listeners and await them (``WorkerEventManager.build`` + ``listeners_for``, what the
  consumer does per event before it acks);
* the same while an ``ExceptionEvent`` listener exists (each listener wrapped to report);
* the same while a ``wait_for`` is pending whose predicate refuses every event;
* the baseline: hikari's ``EventManagerImpl.consume_raw_event`` with the same listener, which
  builds the event and runs the listener in a task of its own (a ``GatewayBot``'s path).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import typing

import hikari
from hikari.impl import entity_factory, event_factory, event_manager

from worker import bot as bot_module

PAYLOAD: typing.Final[dict[str, typing.Any]] = {
    "id": "1000", "channel_id": "2000", "guild_id": "3000", "content": "!ping",
    "author": {"id": "4000", "username": "u", "discriminator": "0", "avatar": None,
               "global_name": None},
    "member": {"roles": [], "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False,
               "mute": False, "flags": 0},
    "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None, "tts": False,
    "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
    "embeds": [], "components": [], "pinned": False, "type": 0, "flags": 0,
}  # fmt: skip


class Shard:
    """The shard an event names (only its id and count are read)."""

    id = 0
    shard_count = 1


SHARD: typing.Final = typing.cast("hikari.api.GatewayShard", Shard())


class App:
    """What hikari's factories read of their app (a GatewayBot's, stripped)."""

    def __init__(self) -> None:
        self.entity_factory = entity_factory.EntityFactoryImpl(
            typing.cast("hikari.RESTAware", self)
        )


async def worker_path(events: int, *, report: bool = False, waiter: bool = False) -> float:
    """Seconds per event on the worker's path."""
    bot = bot_module.Bot()
    handled = 0

    @bot.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        nonlocal handled
        del event
        handled += 1

    if report:

        @bot.listen()
        async def on_error(event: hikari.ExceptionEvent[hikari.Event]) -> None: ...

    manager = bot.events
    pending = None
    if waiter:
        pending = asyncio.ensure_future(
            manager.wait_for(
                hikari.GuildMessageCreateEvent, timeout=None, predicate=lambda _: False
            )
        )
        await asyncio.sleep(0)
    started = time.perf_counter()
    for _ in range(events):
        for event in manager.build("MESSAGE_CREATE", SHARD, PAYLOAD):
            for listener in manager.listeners_for(event):
                await listener(event)
    elapsed = time.perf_counter() - started
    if pending is not None:
        pending.cancel()
    assert handled == events
    return elapsed / events


async def hikari_path(events: int) -> float:
    """Seconds per event through hikari's own event manager (listener tasks awaited)."""
    app = App()
    manager = event_manager.EventManagerImpl(
        app.entity_factory,
        event_factory.EventFactoryImpl(typing.cast("hikari.RESTAware", app)),
        hikari.Intents.ALL,
        cache=None,
    )
    handled = 0

    @manager.listen()
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        nonlocal handled
        del event
        handled += 1

    started = time.perf_counter()
    for _ in range(events):
        manager.consume_raw_event("MESSAGE_CREATE", SHARD, PAYLOAD)
        await asyncio.sleep(0)  # the listener's task runs
    for _ in range(100):
        if handled == events:
            break
        await asyncio.sleep(0)
    assert handled == events, f"{handled} of {events} handled"
    return (time.perf_counter() - started) / events


async def run(events: int) -> None:
    rows: list[tuple[str, float]] = []
    for label, measure in (
        ("worker: build, listeners awaited", lambda: worker_path(events)),
        ("worker, with an ExceptionEvent listener", lambda: worker_path(events, report=True)),
        ("worker, with a wait_for pending", lambda: worker_path(events, waiter=True)),
        ("baseline: hikari's consume_raw_event", lambda: hikari_path(events)),
    ):
        await measure()  # warm-up
        rows.append((label, min([await measure() for _ in range(3)])))
    print(f"{events:,} MESSAGE_CREATE events, one listener, best of 3 runs\n")
    print("| path | µs per event | events/s |")
    print("|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds * 1e6:.1f} | {1 / seconds:,.0f} |")
    print(f"\nworker / baseline: {rows[0][1] / rows[-1][1]:.2f}x time per event")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    await run(args.events)


if __name__ == "__main__":
    asyncio.run(main())
