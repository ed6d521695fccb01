"""REST routes of application commands, global and per guild: list, create (or replace by
name), overwrite in bulk (keeping the ids of commands that stay), delete."""

from __future__ import annotations

import typing

from playground.discord import command_rules, rest_routing, rest_state

if typing.TYPE_CHECKING:
    from aiohttp import web

Json = dict[str, typing.Any]
routes: typing.Final = rest_routing.RouteTable()


def _command_scope(api: rest_state.RestState, p: dict[str, str]) -> dict[int, Json]:
    if rest_routing.snowflake(p, "application_id") != api.world.application_id:
        raise rest_state.DiscordHTTPError(403, 50001, "Missing Access")
    guild_id = rest_routing.snowflake(p, "guild_id") if "guild_id" in p else None
    if guild_id is not None:
        api.guild(guild_id)
    return api.world.commands.setdefault(guild_id, {})


def _invalid(errors: Json) -> rest_state.DiscordHTTPError:
    return rest_state.DiscordHTTPError(400, 50035, "Invalid Form Body", errors)


def _make_command(api: rest_state.RestState, p: dict[str, str], body: typing.Any) -> Json:
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise _invalid({"name": {"_errors": []}})
    kind = body.get("type", 1)
    if kind not in command_rules.COMMAND_TYPES:
        raise _invalid({"type": {"_errors": []}})
    errors = command_rules.command_errors(body, kind)
    if errors:
        raise _invalid(errors)
    command = {
        "id": str(api.world.snowflakes.next()),
        "application_id": str(api.world.application_id),
        "version": str(api.world.snowflakes.next()),
        "type": kind,
        "name": body["name"],
        # Application Command Object: "Empty string for USER and MESSAGE commands".
        "description": body.get("description", "") if kind == 1 else "",
        "options": [command_rules.stored_option(o) for o in body.get("options") or []],
        "default_member_permissions": body.get("default_member_permissions"),
        "nsfw": body.get("nsfw", False),
        "contexts": body.get("contexts"),
        "integration_types": body.get("integration_types", [0]),
        **command_rules.localizations(body),
    }
    if "guild_id" in p:
        command["guild_id"] = p["guild_id"]
    return command


def _listed(command: Json, request: web.Request) -> Json:
    """Application Commands > Retrieving localized commands: the batch GET returns the full
    ``name_localizations`` / ``description_localizations`` only with ``?with_localizations=
    true``; otherwise ``name_localized`` / ``description_localized`` for the requester's locale
    (the ``X-Discord-Locale`` header, then ``Accept-Language``), absent when not localised."""
    if request.query.get("with_localizations", "").lower() == "true":
        return command
    locale = request.headers.get("X-Discord-Locale") or request.headers.get("Accept-Language")
    return command_rules.localized(command, locale)


def _list_commands(
    api: rest_state.RestState, request: web.Request, p: dict[str, str], _b: typing.Any
) -> list[Json]:
    return [_listed(c, request) for c in _command_scope(api, p).values()]


def _create_command(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], b: typing.Any
) -> Json:
    scope = _command_scope(api, p)
    command = _make_command(api, p, b)
    for existing_id, existing in list(scope.items()):
        if existing["name"] == command["name"] and existing["type"] == command["type"]:
            command["id"] = existing["id"]
            del scope[existing_id]
    scope[int(command["id"])] = command
    return command


def _overwrite_commands(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], b: typing.Any
) -> list[Json]:
    scope = _command_scope(api, p)
    if not isinstance(b, list):
        raise rest_state.DiscordHTTPError(400, 50035, "Invalid Form Body")
    by_name = {(c["name"], c["type"]): c for c in scope.values()}
    new = []
    for item in b:
        command = _make_command(api, p, item)
        previous = by_name.get((command["name"], command["type"]))
        if previous is not None:
            command["id"] = previous["id"]
        new.append(command)
    scope.clear()
    scope.update({int(c["id"]): c for c in new})
    return new


def _delete_command(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> None:
    if _command_scope(api, p).pop(rest_routing.snowflake(p, "command_id"), None) is None:
        raise rest_state.DiscordHTTPError(404, 10063, "Unknown application command")


for _prefix in (
    "/applications/{application_id}",
    "/applications/{application_id}/guilds/{guild_id}",
):
    routes.add("GET", f"{_prefix}/commands")(_list_commands)
    routes.add("POST", f"{_prefix}/commands")(_create_command)
    routes.add("PUT", f"{_prefix}/commands")(_overwrite_commands)
    routes.add("DELETE", f"{_prefix}/commands/{{command_id}}")(_delete_command)
