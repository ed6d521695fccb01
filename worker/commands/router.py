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
from worker.commands import arguments, components, context_menus, cooldowns, modals, model, prompts
from worker.commands import context as context_module
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
        #: User and message context-menu commands, by (type, name).
        self.menus: dict[tuple[hikari.CommandType, str], model.Command] = {}
        self.component_routes = components.ComponentRoutes("component")
        self.modal_routes = components.ComponentRoutes("modal")
        #: Called for what a command's own ``on_error`` did not handle (``@bot.error_handler``).
        self.on_error: model.ErrorHandler | None = None
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
        name_localizations: typing.Mapping[str, str] | None = None,
        description_localizations: typing.Mapping[str, str] | None = None,
        on_error: model.ErrorHandler | None = None,
    ) -> typing.Callable[[model.Callback], model.Callback]:
        """Register a command (a subcommand of ``group`` when given, see :meth:`group`).
        ``on_error(ctx, exc)`` is tried first for what the callback raises (see
        :meth:`error_handler`)."""

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
                name_localizations=dict(name_localizations or {}),
                description_localizations=dict(description_localizations or {}),
                on_error=on_error,
            )
            if group is None:
                self.add(command)
            elif command.name in group.subcommands:
                raise ValueError(f"{group.name} already has a {command.name!r} subcommand")
            else:
                group.subcommands[command.name] = command
            return callback

        return decorator

    def group(
        self,
        name: str,
        *,
        description: str,
        guild_only: bool = False,
        name_localizations: typing.Mapping[str, str] | None = None,
        description_localizations: typing.Mapping[str, str] | None = None,
    ) -> model.Command:
        """A command that holds subcommands (``/config show``, ``!config show``); register them
        with ``@bot.command(..., group=the_group)``."""
        holder = model.Command(
            name, description, None, [], guild_only=guild_only,
            name_localizations=dict(name_localizations or {}),
            description_localizations=dict(description_localizations or {}),
        )  # fmt: skip
        self.add(holder)
        return holder

    def add(self, command: model.Command) -> None:
        for name in (command.name, *command.aliases):
            if name in self.commands or name in self._aliases:
                raise ValueError(f"command name {name!r} is already taken")
        self.commands[command.name] = command
        for alias in command.aliases:
            self._aliases[alias] = command.name
        self._listen()

    def _listen(self) -> None:
        if not self._listening:
            # Listening binds MESSAGE_CREATE and INTERACTION_CREATE to the group's queue.
            self._bot.listen(hikari.GuildMessageCreateEvent)(self.on_message)
            self._bot.listen(hikari.DMMessageCreateEvent)(self.on_message)
            self._bot.listen(hikari.InteractionCreateEvent)(self.on_interaction)
            self._listening = True

    def context_menu(  # noqa: PLR0913 - one keyword per thing a command declares
        self,
        kind: hikari.CommandType,
        name: str,
        *,
        guild_only: bool = False,
        owner_only: bool = False,
        user_permissions: hikari.Permissions = hikari.Permissions.NONE,
        checks: typing.Sequence[model.Check] = (),
        cooldown: model.Cooldown | None = None,
        opens_modal: bool = False,
        name_localizations: typing.Mapping[str, str] | None = None,
        on_error: model.ErrorHandler | None = None,
    ) -> typing.Callable[[model.Callback], model.Callback]:
        """A user (``callback(ctx, user)``) or message (``callback(ctx, message)``) command
        in the context menu: a name of up to 32 characters, spaces allowed, no description."""

        def decorator(callback: model.Callback) -> model.Callback:
            command = model.Command(
                name=name, description="", callback=callback, options=[],
                guild_only=guild_only or bool(user_permissions), owner_only=owner_only,
                user_permissions=user_permissions, checks=list(checks), cooldown=cooldown,
                plugin=getattr(callback, "__module__", ""), opens_modal=opens_modal,
                type=kind, name_localizations=dict(name_localizations or {}),
                on_error=on_error,
            )  # fmt: skip
            if (kind, name) in self.menus:
                raise ValueError(f"a {kind.name.lower()} command {name!r} already exists")
            self.menus[kind, name] = command
            self._listen()
            return callback

        return decorator

    def component(
        self,
        pattern: str,
        *,
        opens_modal: bool = False,
        on_error: model.ErrorHandler | None = None,
    ) -> typing.Callable[[components.ComponentCallback], components.ComponentCallback]:
        """Route clicks and selects whose ``custom_id`` matches ``pattern`` (see
        ``worker.commands.components``) to ``callback(ctx)``, on any replica."""

        def decorator(callback: components.ComponentCallback) -> components.ComponentCallback:
            self.component_routes.add(
                components.Route(
                    pattern, callback, opens_modal, on_error, getattr(callback, "__module__", "")
                )
            )
            self._listen()
            return callback

        return decorator

    def modal(
        self, pattern: str, *, on_error: model.ErrorHandler | None = None
    ) -> typing.Callable[[components.ComponentCallback], components.ComponentCallback]:
        """Route submitted modals whose ``custom_id`` matches ``pattern`` to
        ``callback(ctx, **typed text inputs)`` (see ``worker.commands.modals``)."""

        def decorator(callback: components.ComponentCallback) -> components.ComponentCallback:
            fields = modals.fields_of(callback)
            self.modal_routes.add(
                components.Route(
                    pattern, callback, False, on_error, getattr(callback, "__module__", ""),
                    fields,
                )
            )  # fmt: skip
            self._listen()
            return callback

        return decorator

    def error_handler(self, callback: model.ErrorHandler) -> model.ErrorHandler:
        """The bot's error handler: ``callback(ctx, exc)`` for an exception a command,
        context menu, component or modal handler raised and its own ``on_error`` (if any)
        did not handle. Returning means handled; raising (``exc`` or another) means not: the
        error is logged and the user gets the default apology."""
        self.on_error = callback
        return callback

    def synced(self) -> list[model.Command]:
        """Every application command ``sync-commands`` registers: slash, then context menus."""
        return [*self.commands.values(), *self.menus.values()]

    def check(self, callback: model.Check) -> model.Check:
        """A check every command runs first."""
        self._global_checks.append(callback)
        return callback

    def find(self, name: str) -> model.Command | None:
        return self.commands.get(self._aliases.get(name, name))

    def opens_modal(self, payload: dict[str, typing.Any]) -> bool:
        """Whether the handler an INTERACTION_CREATE runs is declared ``opens_modal``."""
        data = payload.get("data") or {}
        if payload.get("type") == 3:  # MESSAGE_COMPONENT
            found = self.component_routes.find(str(data.get("custom_id", "")))
            return found is not None and found[0].opens_modal
        if payload.get("type") != 2:  # APPLICATION_COMMAND
            return False
        kind = data.get("type", 1)
        if kind != hikari.CommandType.SLASH:
            menu = self.menus.get((hikari.CommandType(kind), str(data.get("name", ""))))
            return menu is not None and menu.opens_modal
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
            kwargs = await arguments.from_words(self._bot, ctx, command, rest)
        except options_module.ArgumentError as exc:
            await self._tell(ctx, f"{exc}\nUsage: `{command.usage(prefix.strip())}`")
            return
        await self._invoke(ctx, kwargs)

    async def on_interaction(self, event: hikari.InteractionCreateEvent) -> None:
        interaction = event.interaction
        if isinstance(interaction, hikari.ComponentInteraction):
            # A handler waiting for this very click (on any replica) takes it first.
            if self.prompts is not None and await self._offered(
                self.prompts.offer_component(interaction)
            ):
                return
            await self._route(self.component_routes, interaction)
            return
        if isinstance(interaction, hikari.ModalInteraction):
            await self._route(self.modal_routes, interaction)
            return
        if isinstance(interaction, hikari.AutocompleteInteraction):
            await self._autocomplete(interaction)
            return
        if not isinstance(interaction, hikari.CommandInteraction):
            return
        if interaction.command_type != hikari.CommandType.SLASH:
            await self._run_menu(interaction)
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
            kwargs = arguments.from_slash(command, given, interaction.resolved)
        except options_module.ArgumentError as exc:
            await self._tell(ctx, str(exc))
            return
        await self._invoke(ctx, kwargs)

    async def _run_menu(self, interaction: hikari.CommandInteraction) -> None:
        command = self.menus.get(
            (hikari.CommandType(interaction.command_type), interaction.command_name)
        )
        if command is None:
            return
        ctx = context_module.Context(
            bot=self._bot, command=command, author=interaction.user,
            member=interaction.member, guild_id=interaction.guild_id,
            channel_id=interaction.channel_id, prefix="/", interaction=interaction,
        )  # fmt: skip
        target = context_menus.target_of(interaction)
        if target is None:
            await self._tell(ctx, "Discord sent no target for this command.")
            return
        await self._invoke(ctx, {}, (target,))

    async def _route(
        self,
        routes: components.ComponentRoutes,
        interaction: hikari.ComponentInteraction | hikari.ModalInteraction,
    ) -> None:
        found = routes.find(interaction.custom_id)
        if found is None:
            return
        route, captures = found
        ctx = components.ComponentContext(self._bot, interaction, route, captures)
        try:
            kwargs: dict[str, typing.Any] = {}
            if isinstance(interaction, hikari.ModalInteraction):
                try:
                    kwargs = modals.parse(route.fields, modals.submitted(interaction))
                except options_module.ArgumentError as exc:
                    await ctx.respond(str(exc), ephemeral=True)
                    return
            await route.callback(ctx, **kwargs)
        except Exception as exc:
            await self._failed(ctx, exc, route.on_error, route.pattern)

    async def _failed(
        self,
        ctx: context_module.Context | components.ComponentContext,
        exc: Exception,
        own: model.ErrorHandler | None,
        what: str,
    ) -> None:
        """The handler's ``on_error``, then the bot's: the first that returns handled it;
        one that raises passes on what it raised. Unhandled: logged, and an apology."""
        self.failures += 1
        for handler in (own, self.on_error):
            if handler is None:
                continue
            try:
                await handler(ctx, exc)
            except Exception as raised:
                if raised is not exc:
                    raised.__context__ = exc
                exc = raised
            else:
                return
        _LOGGER.error("command failed", extra={"command": what}, exc_info=exc)
        if not ctx.responded:
            try:
                await ctx.respond(
                    "Something went wrong running this command; it was logged.", ephemeral=True
                )
            except hikari.HTTPError as http_exc:
                _LOGGER.warning("could not answer a command", extra={"error": str(http_exc)})

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

    async def _invoke(
        self,
        ctx: context_module.Context,
        kwargs: dict[str, typing.Any],
        args: tuple[typing.Any, ...] = (),
    ) -> None:
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
                await callback(ctx, *args, **kwargs)
                return
            scope_id = _scope_id(ctx, limit.scope)
            if not await self.concurrency.enter(command.name, limit, scope_id):
                await self._tell(ctx, "This command is already running; try again when it ends.")
                return
            try:
                await callback(ctx, *args, **kwargs)
            finally:
                await self.concurrency.leave(command.name, limit, scope_id)
        except Exception as exc:
            await self._failed(ctx, exc, command.on_error, command.qualified_name)

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
