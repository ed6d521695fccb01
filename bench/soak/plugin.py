"""The soak's recording plugin (``WORKER_PLUGINS=worker.plugins.core,bench.soak.plugin``).

Every command it handles answers over REST with the id of the event that asked for it, so the
checker can count answers from what the Discord emulator received, and from nothing else:
``!soak`` (a prefix command: the message's id), ``/soak`` (a slash command: the interaction's
id) and a click on a ``soak:`` button (the interaction's id).
"""

from __future__ import annotations

import typing

import hikari

if typing.TYPE_CHECKING:
    from worker import bot as bot_module
    from worker.commands import Context

#: What every answer starts with; the checker looks for it in the REST bodies.
ANSWER: typing.Final = "soak-answer"
#: Buttons whose clicks this plugin answers.
BUTTON_PREFIX: typing.Final = "soak:"


def setup(bot: bot_module.Bot) -> None:
    @bot.command(description="Answers with the id of the event that asked")
    async def soak(ctx: Context) -> None:
        asked = ctx.interaction if ctx.interaction is not None else ctx.message
        assert asked is not None
        await ctx.respond(f"{ANSWER} {int(asked.id)}")

    @bot.listen(hikari.InteractionCreateEvent)
    async def click(event: hikari.InteractionCreateEvent) -> None:
        interaction = event.interaction
        if not isinstance(interaction, hikari.ComponentInteraction):
            return
        if not interaction.custom_id.startswith(BUTTON_PREFIX):
            return
        await interaction.create_initial_response(
            hikari.ResponseType.MESSAGE_CREATE, f"{ANSWER} {int(interaction.id)}"
        )
