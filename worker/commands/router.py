"""Commands for the whole fleet: registered by plugins, reached by a prefix or a slash, checked,
cooled down in Redis, answered on the surface they came from.

Bad input never goes unanswered: a parse error replies with what was wrong and the usage, a
failed check replies with its reason, a cooldown with the time left, a crash with an apology
(and the error logged with the command's name).
"""

from __future__ import annotations

import contextlib
import logging
import typing

import hikari

from shared import redis_client
from worker.commands import context as context_module
from worker.commands import cooldowns, model, prompts
from worker.commands import options as options_module

if typing.TYPE_CHECKING:
    from worker import traits

__all__: typing.Sequence[str] = ("CommandRouter",)

_LOGGER = logging.getLogger("shardline.worker.commands")
_EPHEMERAL_ERRORS: typing.Final = True
#: Read-through kind of a member's role ids fetched over REST for a permission check.
_MEMBER_ROLES: typing.Final = "member-roles"
#: What ``_fetched_roles`` answers when Discord says 404 Unknown Member.
_NOT_A_MEMBER: typing.Final = object()


class CommandRouter:
    def __init__(self, bot: traits.RouterApp, default_prefix: str = "!") -> None:
        self._bot = bot
        self.default_prefix = default_prefix
        self.commands: dict[str, model.Command] = {}
        self._aliases: dict[str, str] = {}
        self._global_checks: list[model.Check] = []
        self._listening = False
        self._me: hikari.OwnUser | None = None
        self._owners: frozenset[int] | None = None
        self.cooldowns: cooldowns.Cooldowns | None = None
        self.concurrency: cooldowns.Concurrency | None = None
        self.prompts: prompts.Prompts | None = None
        self.failures = 0

    # --- registration -----------------------------------------------------------------------

    def command(  # noqa: PLR0913 - one keyword per thing a command declares
        self,
        name: str | None = None,
        *,
        description: str,
        guild_only: bool = False,
        owner_only: bool = False,
        user_permissions: hikari.Permissions = hikari.Permissions.NONE,
        bot_permissions: hikari.Permissions = hikari.Permissions.NONE,
        checks: typing.Sequence[model.Check] = (),
        cooldown: model.Cooldown | None = None,
        max_concurrency: model.MaxConcurrency | None = None,
        aliases: typing.Sequence[str] = (),
        group: model.Command | None = None,
        opens_modal: bool = False,
    ) -> typing.Callable[[model.Callback], model.Callback]:
        """Register a command (a subcommand of ``group`` when given, see :meth:`group`)."""

        def decorator(callback: model.Callback) -> model.Callback:
            command = model.Command(
                name=name or callback.__name__.rstrip("_").replace("_", "-"),
                description=description,
                callback=callback,
                options=options_module.options_of(callback),
                guild_only=guild_only
                or bool(user_permissions or bot_permissions)
                or bool(group and group.guild_only),
                owner_only=owner_only,
                user_permissions=user_permissions,
                bot_permissions=bot_permissions,
                checks=list(checks),
                cooldown=cooldown,
                max_concurrency=max_concurrency,
                aliases=tuple(aliases),
                plugin=getattr(callback, "__module__", ""),
                parent=group.name if group is not None else "",
                opens_modal=opens_modal,
            )
            if group is None:
                self.add(command)
            elif command.name in group.subcommands:
                raise ValueError(f"{group.name} already has a {command.name!r} subcommand")
            else:
                group.subcommands[command.name] = command
            return callback

        return decorator

    def group(self, name: str, *, description: str, guild_only: bool = False) -> model.Command:
        """A command that holds subcommands (``/config show``, ``!config show``); register them
        with ``@bot.command(..., group=the_group)``."""
        holder = model.Command(name, description, None, [], guild_only=guild_only)
        self.add(holder)
        return holder

    def add(self, command: model.Command) -> None:
        for name in (command.name, *command.aliases):
            if name in self.commands or name in self._aliases:
                raise ValueError(f"command name {name!r} is already taken")
        self.commands[command.name] = command
        for alias in command.aliases:
            self._aliases[alias] = command.name
        if not self._listening:
            # Listening binds MESSAGE_CREATE and INTERACTION_CREATE to the group's queue.
            self._bot.listen(hikari.GuildMessageCreateEvent)(self.on_message)
            self._bot.listen(hikari.DMMessageCreateEvent)(self.on_message)
            self._bot.listen(hikari.InteractionCreateEvent)(self.on_interaction)
            self._listening = True

    def check(self, callback: model.Check) -> model.Check:
        """A check every command runs first."""
        self._global_checks.append(callback)
        return callback

    def find(self, name: str) -> model.Command | None:
        return self.commands.get(self._aliases.get(name, name))

    def opens_modal(self, payload: dict[str, typing.Any]) -> bool:
        """Whether the slash command an INTERACTION_CREATE runs is declared ``opens_modal``."""
        if payload.get("type") != 2:  # APPLICATION_COMMAND
            return False
        data = payload.get("data") or {}
        command = self.commands.get(str(data.get("name", "")))
        if command is None:
            return False
        for option in data.get("options") or ():
            if option.get("type") == 1:  # SUB_COMMAND
                sub = command.subcommands.get(str(option.get("name", "")))
                return sub is not None and sub.opens_modal
        return command.opens_modal

    # --- who we are -------------------------------------------------------------------------

    async def me(self) -> hikari.OwnUser:
        if self._me is None:
            self._me = await self._bot.rest.fetch_my_user()
        return self._me

    async def owners(self) -> frozenset[int]:
        if self._owners is None:
            application = await self._bot.rest.fetch_application()
            ids = {int(application.owner.id)}
            if application.team is not None:
                ids |= {int(m) for m in application.team.members}
            self._owners = frozenset(ids)
        return self._owners

    async def prefixes(self, guild_id: hikari.Snowflake | None) -> list[str]:
        """The guild's prefix (settings store) or the default, and the bot's mention."""
        prefix = self.default_prefix
        store = self._bot.settings
        if guild_id is not None and store is not None:
            prefix = (await store.guild(int(guild_id))).prefix or prefix
        me = await self.me()
        return [prefix, f"<@{me.id}> ", f"<@!{me.id}> ", f"<@{me.id}>", f"<@!{me.id}>"]

    # --- the two surfaces -------------------------------------------------------------------

    async def on_message(
        self, event: hikari.GuildMessageCreateEvent | hikari.DMMessageCreateEvent
    ) -> None:
        message = event.message
        content = message.content
        if not content or event.author.is_bot or event.author.is_system:
            return
        # A prompt waiting (on any replica) for this user's next message here takes it.
        if self.prompts is not None and await self._offered(self.prompts.offer_message(message)):
            return
        guild_id = getattr(event, "guild_id", None)
        prefix = next((p for p in await self.prefixes(guild_id) if content.startswith(p)), None)
        if prefix is None:
            return
        name, _, rest = content[len(prefix) :].strip().partition(" ")
        command = self.find(name.lower())
        if command is None:
            return
        if command.subcommands:
            sub_name, _, rest = rest.strip().partition(" ")
            sub = command.subcommands.get(sub_name.lower())
            if sub is None:
                choices = ", ".join(f"`{n}`" for n in sorted(command.subcommands))
                await self._reply_plain(message, f"Choose one of {choices}.")
                return
            command = sub
        ctx = context_module.Context(
            bot=self._bot, command=command, author=event.author,
            member=getattr(event, "member", None), guild_id=guild_id,
            channel_id=message.channel_id, prefix=prefix, message=message,
        )  # fmt: skip
        try:
            kwargs = await self._parse_words(ctx, command, rest)
        except options_module.ArgumentError as exc:
            await self._tell(ctx, f"{exc}\nUsage: `{command.usage(prefix.strip())}`")
            return
        await self._invoke(ctx, kwargs)

    async def on_interaction(self, event: hikari.InteractionCreateEvent) -> None:
        interaction = event.interaction
        if isinstance(interaction, hikari.ComponentInteraction) and self.prompts is not None:
            await self._offered(self.prompts.offer_component(interaction))
            return
        if isinstance(interaction, hikari.AutocompleteInteraction):
            await self._autocomplete(interaction)
            return
        if not isinstance(interaction, hikari.CommandInteraction):
            return
        command, given = self._resolve_slash(interaction.command_name, interaction.options)
        if command is None:
            return
        ctx = context_module.Context(
            bot=self._bot, command=command, author=interaction.user,
            member=interaction.member, guild_id=interaction.guild_id,
            channel_id=interaction.channel_id, prefix="/", interaction=interaction,
        )  # fmt: skip
        try:
            kwargs = self._parse_slash(command, given, interaction.resolved)
        except options_module.ArgumentError as exc:
            await self._tell(ctx, str(exc))
            return
        await self._invoke(ctx, kwargs)

    async def _autocomplete(self, interaction: hikari.AutocompleteInteraction) -> None:
        """Suggestions for the option the user is typing in (at most Discord's 25)."""
        command, given = self._resolve_slash(interaction.command_name, interaction.options)
        focused = next((o for o in given if getattr(o, "is_focused", False)), None)
        if command is None or focused is None:
            return
        spec = next((o for o in command.options if o.name == focused.name), None)
        if spec is None or spec.autocomplete is None:
            return
        try:
            found = await spec.autocomplete(interaction, str(focused.value or ""))
            choices = [
                hikari.impl.AutocompleteChoiceBuilder(name=str(value)[:100], value=value)
                for value in list(found)[:25]
            ]
            await interaction.create_response(choices)
        except Exception:
            self.failures += 1
            _LOGGER.exception("autocomplete failed", extra={"command": command.name})

    @staticmethod
    async def _offered(offer: typing.Awaitable[bool]) -> bool:
        try:
            return await offer
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning("prompts unavailable: Redis", extra={"error": str(exc)})
            return False

    # --- parsing ----------------------------------------------------------------------------

    async def _parse_words(
        self, ctx: context_module.Context, command: model.Command, text: str
    ) -> dict[str, typing.Any]:
        words = options_module.split_words(text)
        kwargs: dict[str, typing.Any] = {}
        for index, spec in enumerate(command.options):
            last = index == len(command.options) - 1
            if not words:
                if spec.required:
                    raise options_module.ArgumentError(f"`{spec.name}` is missing.")
                kwargs[spec.name] = spec.default
                continue
            if last and spec.kind is options_module.Kind.STRING:
                word, words = " ".join(words), []  # the last text option takes the rest
            else:
                word, words = words[0], words[1:]
            value = options_module.convert_word(spec, word)
            kwargs[spec.name] = await self._resolve(ctx, spec, value)
        if words:
            raise options_module.ArgumentError(
                f"Too many words: {options_module.shown(' '.join(words))}."
            )
        return kwargs

    async def _resolve(
        self, ctx: context_module.Context, spec: options_module.OptionSpec, value: typing.Any
    ) -> typing.Any:
        """Ids from a prefix command as the objects the option's type promises."""
        if not isinstance(value, hikari.Snowflake) or spec.kind in (
            options_module.Kind.INTEGER,
            options_module.Kind.NUMBER,
        ):
            return value
        cache = self._bot.cache
        found: typing.Any = None
        try:
            if spec.kind is options_module.Kind.USER:
                if ctx.guild_id is not None and cache is not None:
                    found = await cache.get_member(ctx.guild_id, value)
                if found is None and spec.wants_member and ctx.guild_id is not None:
                    found = await self._bot.rest.fetch_member(ctx.guild_id, value)
                if found is None and not spec.wants_member:
                    found = (await cache.get_user(value) if cache else None) or (
                        await self._bot.rest.fetch_user(value)
                    )
            elif spec.kind is options_module.Kind.ROLE and ctx.guild_id is not None:
                roles = await self._bot.rest.fetch_roles(ctx.guild_id)
                found = next((r for r in roles if r.id == value), None)
            elif spec.kind is options_module.Kind.CHANNEL:
                found = await self._bot.rest.fetch_channel(value)
        except (hikari.NotFoundError, hikari.ForbiddenError):
            found = None
        except redis_client.REDIS_ERRORS:
            found = None
        if found is None:
            raise options_module.ArgumentError(f"`{spec.name}`: no such {spec.kind.name.lower()}.")
        return found

    def _resolve_slash(
        self, name: str, options: typing.Sequence[hikari.CommandInteractionOption] | None
    ) -> tuple[model.Command | None, typing.Sequence[hikari.CommandInteractionOption]]:
        """The command (or subcommand) an interaction names, and its own options."""
        command = self.commands.get(name)
        given = list(options or ())
        if command is not None and command.subcommands:
            chosen = next((o for o in given if o.type == hikari.OptionType.SUB_COMMAND), None)
            command = command.subcommands.get(chosen.name) if chosen is not None else None
            given = list(chosen.options or ()) if chosen is not None else []
        return command, given

    def _parse_slash(
        self,
        command: model.Command,
        options: typing.Sequence[hikari.CommandInteractionOption],
        resolved: hikari.ResolvedOptionData | None,
    ) -> dict[str, typing.Any]:
        given = {o.name: o.value for o in options}
        kwargs: dict[str, typing.Any] = {}
        for spec in command.options:
            if spec.name not in given:
                if spec.required:
                    raise options_module.ArgumentError(f"`{spec.name}` is missing.")
                kwargs[spec.name] = spec.default
                continue
            value = given[spec.name]
            if spec.kind in (options_module.Kind.USER, options_module.Kind.ROLE,
                             options_module.Kind.CHANNEL):  # fmt: skip
                value = self._from_resolved(spec, hikari.Snowflake(int(str(value))), resolved)
            else:
                value = spec.check(value)
            kwargs[spec.name] = value
        return kwargs

    @staticmethod
    def _from_resolved(
        spec: options_module.OptionSpec,
        value: hikari.Snowflake,
        resolved: hikari.ResolvedOptionData | None,
    ) -> typing.Any:
        found: typing.Any = None
        if resolved is not None:
            if spec.kind is options_module.Kind.USER:
                found = resolved.members.get(value) if spec.wants_member else None
                found = found or resolved.users.get(value)
            elif spec.kind is options_module.Kind.ROLE:
                found = resolved.roles.get(value)
            else:
                found = resolved.channels.get(value)
        if found is None:
            raise options_module.ArgumentError(f"`{spec.name}`: Discord sent no such object.")
        return found

    # --- checks, cooldowns, the call --------------------------------------------------------

    async def _failed_check(self, ctx: context_module.Context) -> str | None:
        command = ctx.command
        if command.guild_only and ctx.guild_id is None:
            return "This command only works in a server."
        if command.owner_only and int(ctx.author.id) not in await self.owners():
            return "Only the bot's owners can use this command."
        if ctx.guild_id is not None and self._bot.settings is not None:
            settings = await self._bot.settings.guild(int(ctx.guild_id))
            if settings.is_disabled(command.name, int(ctx.channel_id)):
                return "This command is disabled here."
        if command.user_permissions:
            missing = await self._missing(ctx, int(ctx.author.id), command.user_permissions)
            if missing:
                return f"You need the {missing} permission to use this command."
        if command.bot_permissions:
            me = await self.me()
            missing = await self._missing(ctx, int(me.id), command.bot_permissions)
            if missing:
                return f"I need the {missing} permission to do that."
        for check in (*self._global_checks, *command.checks):
            reason = await check(ctx)
            if reason:
                return reason
        return None

    async def missing_permissions(
        self, ctx: context_module.Context, wanted: hikari.Permissions
    ) -> str | None:
        """Which of ``wanted`` the author lacks in the channel, by name (``None``: has all)."""
        if ctx.guild_id is None:
            return None
        return await self._missing(ctx, int(ctx.author.id), wanted)

    async def _missing(
        self, ctx: context_module.Context, user_id: int, wanted: hikari.Permissions
    ) -> str | None:
        """The names of ``wanted`` permissions ``user_id`` lacks in the channel (cache)."""
        assert ctx.guild_id is not None
        held: hikari.Permissions | None = None
        if ctx.interaction is not None and user_id == int(ctx.author.id) and ctx.member:
            held = getattr(ctx.member, "permissions", None)
        if held is None and self._bot.cache is not None:
            guild_id, channel_id = int(ctx.guild_id), int(ctx.channel_id)
            # Without a member cache (no GUILD_PRESENCES: GUILD_CREATE carries almost no
            # members), the roles the event itself carried stand in; the owner passes anyway.
            carried = None
            if user_id == int(ctx.author.id) and ctx.member is not None:
                carried = [int(r) for r in ctx.member.role_ids]
            held = await self._bot.cache.member_permissions(
                guild_id, user_id, channel_id, role_ids=carried
            )
            if held is None:
                fetched = await self._fetched_roles(guild_id, user_id)
                if fetched is _NOT_A_MEMBER:
                    return _names(wanted)  # Discord says so: refuse
                if isinstance(fetched, list):
                    held = await self._bot.cache.member_permissions(
                        guild_id, user_id, channel_id, role_ids=fetched
                    )
        if held is None:
            return _names(wanted)  # unknown: refuse rather than guess
        if held & hikari.Permissions.ADMINISTRATOR:
            return None
        lacking = wanted & ~held
        return _names(lacking) if lacking else None

    async def _fetched_roles(self, guild_id: int, user_id: int) -> list[int] | object | None:
        """A member's role ids over REST (GET /guilds/{guild.id}/members/{user.id}, through
        the bot's rate-limited REST), remembered for ``REST_CACHE_TTL``; ``_NOT_A_MEMBER`` on
        404 Unknown Member, ``None`` when Discord could not be asked."""
        cache = self._bot.cache
        assert cache is not None
        ids = (guild_id, user_id)
        try:
            remembered = await cache.recall(_MEMBER_ROLES, ids)
        except redis_client.REDIS_ERRORS:
            remembered = None
        if remembered is not None:
            return [int(r) for r in remembered["roles"]]
        try:
            member = await self._bot.rest.fetch_member(guild_id, user_id)
        except hikari.NotFoundError:
            return _NOT_A_MEMBER
        except (hikari.HTTPError, OSError) as exc:
            _LOGGER.warning(
                "member fetch failed", extra={"guild": guild_id, "error": type(exc).__name__}
            )
            return None
        roles = [int(r) for r in member.role_ids]
        with contextlib.suppress(*redis_client.REDIS_ERRORS):
            # Remembered or not, this check has its answer.
            await cache.remember(_MEMBER_ROLES, ids, {"roles": roles})
        return roles

    async def _invoke(self, ctx: context_module.Context, kwargs: dict[str, typing.Any]) -> None:
        command = ctx.command
        try:
            reason = await self._failed_check(ctx)
            if reason is not None:
                await self._tell(ctx, reason)
                return
            if command.cooldown is not None and self.cooldowns is not None:
                scope_id = _scope_id(ctx, command.cooldown.scope)
                wait = await self.cooldowns.take(command.name, command.cooldown, scope_id)
                if wait > 0:
                    if await self.cooldowns.first_notice(
                        command.name, command.cooldown, scope_id, int(ctx.author.id), wait
                    ):
                        await self._tell(ctx, f"Slow down: try again in {wait:.1f} s.")
                    return
            callback = command.callback
            assert callback is not None  # groups are resolved to a subcommand first
            limit = command.max_concurrency
            if limit is None or self.concurrency is None:
                await callback(ctx, **kwargs)
                return
            scope_id = _scope_id(ctx, limit.scope)
            if not await self.concurrency.enter(command.name, limit, scope_id):
                await self._tell(ctx, "This command is already running; try again when it ends.")
                return
            try:
                await callback(ctx, **kwargs)
            finally:
                await self.concurrency.leave(command.name, limit, scope_id)
        except Exception:
            self.failures += 1
            _LOGGER.exception("command failed", extra={"command": command.name})
            if not ctx.responded:
                await self._tell(ctx, "Something went wrong running this command; it was logged.")

    async def _reply_plain(self, message: hikari.Message, text: str) -> None:
        try:
            await self._bot.rest.create_message(message.channel_id, text, reply=message)
        except hikari.HTTPError as exc:
            _LOGGER.warning("could not answer a command", extra={"error": str(exc)})

    async def _tell(self, ctx: context_module.Context, text: str) -> None:
        try:
            # What the bot says about bad input pings nobody, whatever the input was.
            await ctx.respond(
                text,
                ephemeral=_EPHEMERAL_ERRORS,
                mentions_everyone=False,
                user_mentions=False,
                role_mentions=False,
            )
        except hikari.HTTPError as exc:
            _LOGGER.warning("could not answer a command", extra={"error": str(exc)})


def _scope_id(ctx: context_module.Context, scope: str) -> int:
    return int(
        {
            "user": ctx.author.id, "channel": ctx.channel_id,
            "guild": ctx.guild_id or ctx.channel_id, "global": 0,
        }[scope]
    )  # fmt: skip


def _names(permissions: hikari.Permissions) -> str:
    names = [p.name.replace("_", " ").title() for p in permissions if p.name]
    return " and ".join(f"**{n}**" for n in names) if names else "required"
