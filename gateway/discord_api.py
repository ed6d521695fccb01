"""The REST calls the gateway makes itself: ``GET /gateway/bot``, for voice ``GET /users/@me``
(Lavalink wants the bot's user id), and a guild's state when its cache writes were lost
(:mod:`gateway.repair`)."""

from __future__ import annotations

import dataclasses
import typing

import aiohttp

if typing.TYPE_CHECKING:
    from shared import secret


class DiscordApiError(RuntimeError):
    """Discord refused or could not be reached; the message says what to do."""


#: Members per page of List Guild Members, Discord's maximum (resources/guild).
MEMBERS_PAGE: typing.Final = 1000
#: Answers that mean the bot is no longer in the guild (Unknown Guild, Missing Access).
_GONE: typing.Final = frozenset({403, 404})


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


async def fetch_guild_state(
    api_url: str, token: secret.Secret, guild_id: int
) -> dict[str, typing.Any] | None:
    """A guild as a GUILD_CREATE would carry it, as far as REST tells (the guild with its
    roles and emojis, channels, every member, or no ``members`` key when listing them is
    refused); ``None`` when the bot is no longer in it. Voice states and presences are
    gateway-only: the caller keeps what it has of them."""
    headers = {"Authorization": f"Bot {token.reveal()}", "User-Agent": "DiscordBot (shardline)"}
    base = f"{api_url}/guilds/{guild_id}"
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), headers=headers
        ) as session:

            async def get(url: str, **query: str) -> typing.Any:
                """The answer, or ``None`` for 403/404."""
                async with session.get(url, params=query) as response:
                    if response.status in _GONE:
                        return None
                    if response.status != 200:
                        raise DiscordApiError(
                            f"GET {url[len(api_url) :]} answered {response.status}"
                        )
                    return await response.json()

            guild: dict[str, typing.Any] | None = await get(base)
            if guild is None:
                return None
            guild["channels"] = await get(f"{base}/channels") or []
            members: list[dict[str, typing.Any]] = []
            after = "0"
            while True:
                page = await get(f"{base}/members", limit=str(MEMBERS_PAGE), after=after)
                if page is None:
                    return guild  # no GUILD_MEMBERS intent: the members stay as cached
                members += page
                if len(page) < MEMBERS_PAGE:
                    break
                after = str(max(int(m["user"]["id"]) for m in page))
            guild["members"] = members
            guild["member_count"] = len(members)
    except aiohttp.ClientError as exc:
        raise DiscordApiError(f"cannot reach DISCORD_API_URL: {exc.__class__.__name__}") from None
    return guild
