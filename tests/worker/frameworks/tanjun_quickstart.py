"""hikari-tanjun's quick-start as a worker plugin: the gateway set-up of its usage guide
("Starting with Hikari", plus ``add_prefix`` from its message command section) and commands of
its examples (examples/slash_commands.py, examples/message_commands.py; public domain, CC0).

Only the entry point changed: ``bot = hikari.GatewayBot("TOKEN")`` and ``bot.run()`` became
Shardline's ``setup(bot)``.
"""

import time

import tanjun

component = tanjun.Component()


@component.with_command
@tanjun.as_message_command("ping")
async def ping(ctx: tanjun.abc.Context, /) -> None:
    start_time = time.perf_counter()
    await ctx.respond(content="Nyaa master!!!")
    time_taken = (time.perf_counter() - start_time) * 1_000
    heartbeat_latency = ctx.shards.heartbeat_latency * 1_000 if ctx.shards else float("NAN")
    await ctx.edit_last_response(
        f"PONG\n - REST: {time_taken:.0f}ms\n - Gateway: {heartbeat_latency:.0f}ms"
    )


top_group = component.with_slash_command(
    tanjun.slash_command_group("places", "get info about places")
)


@top_group.as_sub_command("europe", "command description")
async def europe_command(ctx: tanjun.abc.Context) -> None:
    await ctx.respond("I don't know how to describe Europe... small?")


@component.with_command
@tanjun.as_message_command_group("note", "notes")
async def note(ctx: tanjun.abc.Context) -> None:
    await ctx.respond("You have zero notes")


@tanjun.with_greedy_argument("value")
@tanjun.with_argument("name")
@note.as_sub_command("add", "create")
async def note_add(ctx: tanjun.abc.Context, name: str, value: str) -> None:
    await ctx.respond(f"Added {name} note with value {value}")


def setup(bot):  # noqa: ANN001, ANN201 - the quick-start's code, as tanjun wrote it
    client = tanjun.Client.from_gateway_bot(bot, declare_global_commands=True, mention_prefix=True)
    client.add_prefix("!")
    client.add_component(component.copy())
