"""Context-menu commands: what a user or message command was opened on.

    @bot.user_command("Report user")
    async def report(ctx: Context, target: hikari.User) -> None: ...

    @bot.message_command("Quote")
    async def quote(ctx: Context, message: hikari.Message) -> None: ...

Receiving and Responding > Interaction Object > Application Command Data: a USER or MESSAGE
command's ``target_id`` is "the id of the user or message targeted", and the object itself is
in ``resolved`` (``users`` and, in a guild, ``members``; ``messages``). A user command's
callback gets the member (an ``InteractionMember``, a ``hikari.User``) when the target is
in the guild, else the user.
"""

from __future__ import annotations

import typing

import hikari

__all__: typing.Sequence[str] = ("target_of",)


def target_of(
    interaction: hikari.CommandInteraction,
) -> hikari.InteractionMember | hikari.User | hikari.Message | None:
    """The member, user or message the command targets; ``None`` when Discord sent none."""
    target_id, resolved = interaction.target_id, interaction.resolved
    if target_id is None or resolved is None:
        return None
    if interaction.command_type == hikari.CommandType.MESSAGE:
        return resolved.messages.get(target_id)
    return resolved.members.get(target_id) or resolved.users.get(target_id)
