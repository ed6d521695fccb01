"""REST routes of interactions: the callback (within 3 s), then the interaction's webhook for
follow-ups and the original response (for 15 minutes)."""

from __future__ import annotations

import time
import typing

from playground.discord import rest_routing, rest_state

if typing.TYPE_CHECKING:
    from aiohttp import web

Json = dict[str, typing.Any]
routes: typing.Final = rest_routing.RouteTable()

_CALLBACK_TYPES: typing.Final = frozenset({1, 4, 5, 6, 7, 8, 9, 10, 12})


# Not bound to the global limit (discord-api-docs, Rate Limits, "Global Rate Limit":
# "Interaction endpoints are not bound to the bot's Global Rate Limit"), and no per-route limit
# or rate-limit headers: its path has no top-level resource (Rate Limits: channels, guilds and
# webhooks only), each interaction takes one initial response (a second is 40060), and hikari,
# written against the live API, declares the route without rate limits and logs a bucket header
# on it as a bug it must report, then treats every callback of the process as one bucket (soak
# seed 753623: every worker logged it at its first interaction, and callbacks queued behind
# each other until most missed their 3 s).
@routes.add(
    "POST",
    "/interactions/{interaction_id}/{interaction_token}/callback",
    auth=False,
    exempt_global=True,
    per_route=False,
)
def _interaction_callback(
    api: rest_state.RestState, request: web.Request, p: dict[str, str], b: typing.Any
) -> Json | None:
    interaction = api.interaction(
        rest_routing.snowflake(p, "interaction_id"), p["interaction_token"]
    )
    if time.monotonic() - interaction.created_at > rest_state.INTERACTION_DEADLINE:
        # After 3 s Discord has already shown "The application did not respond".
        raise rest_state.DiscordHTTPError(404, 10062, "Unknown interaction")
    if interaction.response_type is not None:
        raise rest_state.DiscordHTTPError(400, 40060, "Interaction has already been acknowledged.")
    if not isinstance(b, dict) or b.get("type") not in _CALLBACK_TYPES:
        raise rest_state.DiscordHTTPError(
            400, 50035, "Invalid Form Body", {"type": {"_errors": []}}
        )
    if b["type"] == 9:
        _check_modal(interaction, b.get("data"))
    if b["type"] in (6, 7) and "message" not in interaction.payload:
        # Interaction Callback Type: DEFERRED_UPDATE_MESSAGE and UPDATE_MESSAGE are "only valid
        # for component-based interactions" (a click, or a modal a click opened): there is no
        # message to update otherwise.
        raise rest_state.DiscordHTTPError(
            400, 50035, "Invalid Form Body", {"type": {"_errors": []}}
        )
    interaction.response_type = b["type"]
    interaction.response = b
    interaction.answered.set()
    channel_id = int(interaction.payload["channel_id"])
    if b["type"] == 4:
        data = rest_state.message_body(b.get("data") or {})
        interaction.original = api.post_message(channel_id, api.world.bot_user, data)
    elif b["type"] in (6, 7) and "message" in interaction.payload:
        # A component's response: the original is the message the component is on; type 7
        # updates it now, type 6 promises to (through PATCH .../messages/@original).
        clicked = api.world.messages.get(channel_id, {}).get(
            int(interaction.payload["message"]["id"])
        )
        if clicked is not None:
            interaction.original = clicked
            if b["type"] == 7:
                api.update_message(clicked, b.get("data") or {})
    if request.query.get("with_response", "").lower() != "true":
        return None
    # ?with_response=true: 200 with an interaction callback response instead of 204.
    flags = int((b.get("data") or {}).get("flags") or 0)
    answer: Json = {
        "interaction": {
            "id": str(interaction.id),
            "type": interaction.payload["type"],
            "response_message_loading": b["type"] in (5, 6),
            "response_message_ephemeral": bool(flags & 64),
        },
        "resource": {"type": b["type"]},
    }
    if interaction.original is not None:
        answer["interaction"]["response_message_id"] = interaction.original["id"]
        answer["resource"]["message"] = interaction.original
    return answer


def _check_modal(interaction: rest_state.Interaction, data: typing.Any) -> None:
    """Receiving and Responding > Interaction Response Type 9 MODAL: "not available for
    MODAL_SUBMIT and PING interactions"; Modal data: ``custom_id`` (max 100 characters),
    ``title`` (max 45), ``components`` (1 to 5)."""
    if interaction.payload["type"] in (1, 5):
        raise rest_state.DiscordHTTPError(
            400, 50035, "Invalid Form Body", {"type": {"_errors": []}}
        )
    errors: Json = {}
    if not isinstance(data, dict):
        errors["data"] = {"_errors": []}
    else:
        custom_id, title, components = (
            data.get("custom_id"),
            data.get("title"),
            data.get("components"),
        )
        if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
            errors["custom_id"] = {"_errors": []}
        if not isinstance(title, str) or not 1 <= len(title) <= 45:
            errors["title"] = {"_errors": []}
        if not isinstance(components, list) or not 1 <= len(components) <= 5:
            errors["components"] = {"_errors": []}
    if errors:
        raise rest_state.DiscordHTTPError(400, 50035, "Invalid Form Body", {"data": errors})


@routes.add("POST", "/webhooks/{application_id}/{webhook_token}", auth=False, exempt_global=True)
def _followup(api: rest_state.RestState, _r: web.Request, p: dict[str, str], b: typing.Any) -> Json:
    interaction = api.interaction_by_token(p["webhook_token"])
    if interaction.response_type is None:
        raise rest_state.DiscordHTTPError(404, 10015, "Unknown Webhook")
    body = rest_state.message_body(b)
    settles_deferral = interaction.original is None and interaction.response_type == 5
    if settles_deferral:
        # The first follow-up of a deferred response is that response: as visible as the
        # deferral said, whatever its own flags say.
        body["flags"] = _deferred_flags(interaction)
    message = api.post_message(int(interaction.payload["channel_id"]), api.world.bot_user, body)
    if settles_deferral:
        interaction.original = message
    else:
        interaction.followups.append(message)
    return message


def _deferred_flags(interaction: rest_state.Interaction) -> int:
    data = (interaction.response or {}).get("data") or {}
    return int(data.get("flags") or 0) & rest_state.EPHEMERAL


def _original(
    api: rest_state.RestState, p: dict[str, str]
) -> tuple[rest_state.Interaction, Json | None]:
    interaction = api.interaction_by_token(p["webhook_token"])
    return interaction, interaction.original


def _sent_original(
    api: rest_state.RestState, p: dict[str, str]
) -> tuple[rest_state.Interaction, Json]:
    """The interaction and its original message, which must exist (404 Unknown Message)."""
    interaction, original = _original(api, p)
    if original is None:
        raise rest_state.DiscordHTTPError(404, 10008, "Unknown Message")
    return interaction, original


@routes.add(
    "GET",
    "/webhooks/{application_id}/{webhook_token}/messages/@original",
    auth=False,
    exempt_global=True,
)
def _get_original(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> Json:
    return _sent_original(api, p)[1]


@routes.add(
    "PATCH",
    "/webhooks/{application_id}/{webhook_token}/messages/@original",
    auth=False,
    exempt_global=True,
)
def _edit_original(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], b: typing.Any
) -> Json:
    interaction, original = _original(api, p)
    if interaction.response_type is None:
        raise rest_state.DiscordHTTPError(404, 10015, "Unknown Webhook")
    body = rest_state.message_body(b)
    if original is None:
        # Editing the original of a deferred response sends it, as visible as deferred.
        body["flags"] = _deferred_flags(interaction)
        interaction.original = api.post_message(
            int(interaction.payload["channel_id"]), api.world.bot_user, body
        )
        return interaction.original
    return api.update_message(original, body)


@routes.add(
    "DELETE",
    "/webhooks/{application_id}/{webhook_token}/messages/@original",
    auth=False,
    exempt_global=True,
)
def _delete_original(
    api: rest_state.RestState, _r: web.Request, p: dict[str, str], _b: typing.Any
) -> None:
    interaction, original = _sent_original(api, p)
    channel_messages = api.world.messages.get(int(original["channel_id"]), {})
    channel_messages.pop(int(original["id"]), None)
    interaction.original = None
    api.world.message_changed("delete", original)
