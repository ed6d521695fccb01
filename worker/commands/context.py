"""What a command callback gets: who ran it where, and one way to answer on either surface."""

from __future__ import annotations

import dataclasses
import typing

import hikari

from worker.commands import modals

if typing.TYPE_CHECKING:
    from worker import traits
    from worker.commands import model, prompts

__all__: typing.Sequence[str] = ("Context",)


@dataclasses.dataclass(slots=True)
class Context:
    bot: traits.CommandApp
    command: model.Command
    author: hikari.User
    member: hikari.Member | None
    guild_id: hikari.Snowflake | None
    channel_id: hikari.Snowflake
    #: ``/`` for a slash command, else the prefix the message used.
    prefix: str
    message: hikari.Message | None = None
    interaction: hikari.CommandInteraction | None = None
    responded: bool = False
    #: Deferred by :meth:`defer`: the next answer edits the "thinking..." message.
    deferred: bool = False

    @property
    def is_slash(self) -> bool:
        return self.interaction is not None

    async def respond(
        self,
        content: hikari.UndefinedOr[typing.Any] = hikari.UNDEFINED,
        *,
        ephemeral: bool = False,
        **kwargs: typing.Any,
    ) -> None:
        """Answer: the interaction's response (then follow-ups), or a reply to the message.
        ``ephemeral`` only applies to slash commands (a message reply is always public)."""
        if self.interaction is not None:
            flags = hikari.MessageFlag.EPHEMERAL if ephemeral else hikari.MessageFlag.NONE
            if self.deferred:
                self.deferred = False  # visibility was decided by defer(); later ones follow up
                await self.interaction.edit_initial_response(content, **kwargs)
            elif not self.responded:
                self.responded = True
                await self.interaction.create_initial_response(
                    hikari.ResponseType.MESSAGE_CREATE, content, flags=flags, **kwargs
                )
            else:
                await self.interaction.execute(content, flags=flags, **kwargs)
            return
        self.responded = True
        await self.bot.rest.create_message(
            self.channel_id,
            content,
            reply=self.message if self.message is not None else hikari.UNDEFINED,
            **kwargs,
        )

    async def defer(self, *, ephemeral: bool = False) -> None:
        """Show "thinking..." now and answer with :meth:`respond` later, for a slash command
        that knows it will take a while. Discord fixes the answer's visibility here, so a
        private answer is deferred with ``ephemeral=True``. Without it, the worker defers by
        itself 2 s after the command arrived (publicly, answering privately through an
        ephemeral follow-up). A message command has no deadline: nothing is sent."""
        if self.interaction is None or self.responded:
            return
        self.responded = self.deferred = True
        await self.interaction.create_initial_response(
            hikari.ResponseType.DEFERRED_MESSAGE_CREATE,
            flags=hikari.MessageFlag.EPHEMERAL if ephemeral else hikari.MessageFlag.NONE,
        )

    async def respond_with_modal(
        self, title: str, custom_id: str, *fields: modals.TextInput
    ) -> None:
        """Open a modal (the first response only: declare the command ``opens_modal=True``
        so the worker never defers it). Route its submission with ``@bot.modal(pattern)``."""
        if self.interaction is None:
            raise TypeError("a prefix command cannot open a modal; only interactions can")
        self.responded = True
        await modals.open_modal(self.interaction, title, custom_id, fields)

    async def prompt(
        self,
        question: str,
        *,
        timeout: float = 60.0,
        check: typing.Callable[[prompts.Answer], bool] | None = None,
    ) -> prompts.Answer:
        """Ask, then wait for the author's next message here (whichever replica receives it).
        Raises :class:`prompts.PromptTimeoutError` after ``timeout`` seconds."""
        waiting = self.bot.commands.prompts
        if waiting is None:
            raise RuntimeError("prompts need the worker's Redis")
        return await waiting.next_message(
            int(self.channel_id),
            int(self.author.id),
            timeout=timeout,
            check=check,
            registered=lambda: self.respond(question),
        )

    async def wait_for_component(
        self, custom_ids: typing.Iterable[str], *, timeout: float = 60.0
    ) -> prompts.ComponentAnswer:
        """Wait for a click on (or a choice in) one of the components ``custom_ids``."""
        waiting = self.bot.commands.prompts
        if waiting is None:
            raise RuntimeError("component waits need the worker's Redis")
        return await waiting.component(custom_ids, timeout=timeout)
