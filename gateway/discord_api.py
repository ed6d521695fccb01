"""The REST calls the gateway makes itself: ``GET /gateway/bot`` and, for voice,
``GET /users/@me`` (Lavalink wants the bot's user id)."""

from __future__ import annotations

import dataclasses
import typing

import aiohttp

if typing.TYPE_CHECKING:
    from shared import secret


class DiscordApiError(RuntimeError):
    """Discord refused or could not be reached; the message says what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayBotInfo:
    url: str
    shards: int
    total: int
    remaining: int
    reset_after: float
    max_concurrency: int


async def _get(api_url: str, token: secret.Secret, path: str) -> dict[str, typing.Any]:
    headers = {"Authorization": f"Bot {token.reveal()}", "User-Agent": "DiscordBot (shardline)"}
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{api_url}{path}", headers=headers) as response,
        ):
            if response.status == 401:
                raise DiscordApiError("DISCORD_TOKEN was rejected by Discord (401 Unauthorized)")
            if response.status != 200:
                raise DiscordApiError(f"GET {path} answered {response.status}")
            body: dict[str, typing.Any] = await response.json()
    except aiohttp.ClientError as exc:
        raise DiscordApiError(f"cannot reach DISCORD_API_URL: {exc.__class__.__name__}") from None
    return body


async def fetch_gateway_bot(api_url: str, token: secret.Secret) -> GatewayBotInfo:
    body = await _get(api_url, token, "/gateway/bot")
    limit = body["session_start_limit"]
    return GatewayBotInfo(
        url=body["url"],
        shards=int(body["shards"]),
        total=int(limit["total"]),
        remaining=int(limit["remaining"]),
        reset_after=float(limit["reset_after"]) / 1000,
        max_concurrency=int(limit["max_concurrency"]),
    )


async def fetch_bot_user_id(api_url: str, token: secret.Secret) -> int:
    return int((await _get(api_url, token, "/users/@me"))["id"])
