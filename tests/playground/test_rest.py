"""The emulated REST API: routes, errors, rate limits, interactions."""

from __future__ import annotations

import asyncio
import typing

import aiohttp
import hikari
import pytest

from playground.discord import emulator, ratelimit, rest

if typing.TYPE_CHECKING:
    from tests.conftest import EmulatorFactory as Factory

Json = dict[str, typing.Any]


class Api:
    def __init__(self, discord: emulator.DiscordEmulator, session: aiohttp.ClientSession) -> None:
        self.discord = discord
        self.session = session

    async def call(
        self, method: str, path: str, body: object = None, *, auth: bool = True
    ) -> tuple[int, typing.Any, typing.Mapping[str, str]]:
        headers = {"Authorization": f"Bot {self.discord.token}"} if auth else {}
        async with self.session.request(
            method, self.discord.api_url + path, json=body, headers=headers
        ) as response:
            if response.content_type == "application/json":
                payload: typing.Any = await response.json()
            else:
                payload = await response.text()
            return response.status, payload, response.headers


@pytest.fixture
async def api(discord: emulator.DiscordEmulator) -> typing.AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(discord, session)


async def make_api(discord: emulator.DiscordEmulator) -> tuple[Api, aiohttp.ClientSession]:
    session = aiohttp.ClientSession()
    return Api(discord, session), session


async def test_gateway_bot(make_emulator: Factory) -> None:
    discord = await make_emulator(
        recommended_shards=12, max_concurrency=4, session_start_remaining=990
    )
    api, session = await make_api(discord)
    status, body, _ = await api.call("GET", "/gateway/bot")
    assert status == 200
    assert body["url"] == discord.gateway.base_url
    assert body["shards"] == 12
    assert body["session_start_limit"]["max_concurrency"] == 4
    assert body["session_start_limit"]["remaining"] == 990
    assert body["session_start_limit"]["total"] == 1000
    assert body["session_start_limit"]["reset_after"] > 0
    await session.close()


async def test_auth_is_required(api: Api) -> None:
    status, body, _ = await api.call("GET", "/users/@me", auth=False)
    assert (status, body) == (401, {"message": "401: Unauthorized", "code": 0})
    status, body, _ = await api.call("GET", "/users/@me")
    assert status == 200
    assert body["bot"] is True


async def test_messages_and_errors(api: Api, discord: emulator.DiscordEmulator) -> None:
    guild = discord.add_guild("g")
    channel_id = discord.channels_of(int(guild["id"]))[0]["id"]
    status, message, headers = await api.call(
        "POST", f"/channels/{channel_id}/messages", {"content": "hi"}
    )
    assert status == 200
    assert message["content"] == "hi"
    assert message["author"]["id"] == str(discord.world.bot_id)
    assert headers["X-RateLimit-Limit"] == "5"
    assert headers["X-RateLimit-Remaining"] == "4"
    assert float(headers["X-RateLimit-Reset-After"]) <= 5.0
    assert headers["X-RateLimit-Bucket"]
    status, fetched, _ = await api.call("GET", f"/channels/{channel_id}/messages/{message['id']}")
    assert fetched["id"] == message["id"]
    status, body, _ = await api.call("POST", f"/channels/{channel_id}/messages", {"content": ""})
    assert (status, body["code"]) == (400, 50006)
    status, body, _ = await api.call(
        "POST", f"/channels/{channel_id}/messages", {"content": "x" * 2001}
    )
    assert (status, body["code"]) == (400, 50035)
    status, body, _ = await api.call("POST", "/channels/1/messages", {"content": "x"})
    assert (status, body["code"]) == (404, 10003)
    status, _, _ = await api.call("DELETE", f"/channels/{channel_id}/messages/{message['id']}")
    assert status == 204
    [create, *_] = discord.records.rest
    assert (create.method, create.route, create.status) == (
        "POST",
        "POST /channels/{channel_id}/messages",
        200,
    )


async def test_route_bucket_429_with_retry_after(
    api: Api, discord: emulator.DiscordEmulator
) -> None:
    guild = discord.add_guild("g")
    channel_id = discord.channels_of(int(guild["id"]))[0]["id"]
    statuses = []
    for _ in range(6):
        status, body, headers = await api.call(
            "POST", f"/channels/{channel_id}/messages", {"content": "x"}
        )
        statuses.append(status)
    assert statuses == [200] * 5 + [429]
    assert body["message"] == "You are being rate limited."
    assert body["global"] is False
    assert 0 < body["retry_after"] <= 5.0
    assert headers["X-RateLimit-Scope"] == "user"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["Retry-After"]) >= 1
    assert len(discord.records.rate_limited) == 1
    assert discord.limiter.invalid_requests == 1
    # Another channel is another bucket (major parameter).
    other = discord.world.add_channel(int(guild["id"]), "other")
    status, _, _ = await api.call("POST", f"/channels/{other['id']}/messages", {"content": "x"})
    assert status == 200


async def test_interaction_callbacks_have_no_per_route_limit_and_no_rate_limit_headers(
    api: Api, discord: emulator.DiscordEmulator
) -> None:
    """Many callbacks in a second are all accepted, with no X-RateLimit headers: hikari
    declares the route without rate limits and, on a bucket header there, logs an error and
    treats every callback of the process as one bucket (soak seed 753623)."""
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("u")
    asked = [discord.send_interaction(channel_id, user, "ping") for _ in range(15)]
    answers = [
        await api.call("POST", f"/interactions/{i.id}/{i.token}/callback", {"type": 5}, auth=False)
        for i in asked
    ]
    assert [status for status, _, _ in answers] == [204] * 15
    assert not any(name.startswith("X-RateLimit") for _, _, headers in answers for name in headers)
    assert not discord.records.rate_limited


async def test_hikari_sees_no_bucket_header_on_an_interaction_callback(
    discord: emulator.DiscordEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """What the worker's REST client is: hikari's own, which logs an error (and from then on
    limits every callback together) when the callback route answers with a bucket."""
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("u")
    asked = [discord.send_interaction(channel_id, user, "ping") for _ in range(3)]
    app = hikari.RESTApp(url=discord.api_url)
    await app.start()
    try:
        async with app.acquire(discord.token, hikari.TokenType.BOT) as rest:
            for interaction in asked:
                await rest.create_interaction_response(
                    interaction.id, interaction.token, hikari.ResponseType.DEFERRED_MESSAGE_CREATE
                )
    finally:
        await app.close()
    assert "unexpected bucket header" not in caplog.text


async def test_global_limit(make_emulator: Factory) -> None:
    discord = await make_emulator(
        # A long window: six requests one after another all fall in it, however slow.
        rate_limits=ratelimit.RateLimitOptions(
            global_limit=5, global_window=60.0, default_route_limit=(100, 1.0)
        )
    )
    api, session = await make_api(discord)
    results = [await api.call("GET", "/users/@me") for _ in range(6)]
    assert [status for status, _, _ in results] == [200] * 5 + [429]
    _, body, headers = results[-1]
    assert body["global"] is True
    assert headers["X-RateLimit-Global"] == "true"
    assert headers["X-RateLimit-Scope"] == "global"
    await session.close()


async def test_block_global_pauses_everything(api: Api, discord: emulator.DiscordEmulator) -> None:
    discord.limiter.block_global(2.0)
    status, body, _ = await api.call("GET", "/users/@me")
    assert status == 429
    assert body["global"] is True
    await asyncio.sleep(2.05)
    assert (await api.call("GET", "/users/@me"))[0] == 200


async def test_shared_scope_429_is_not_an_invalid_request(
    api: Api, discord: emulator.DiscordEmulator
) -> None:
    discord.limiter.block_route("GET /users/@me", 1.0, scope="shared")
    status, _, headers = await api.call("GET", "/users/@me")
    assert status == 429
    assert headers["X-RateLimit-Scope"] == "shared"
    assert discord.limiter.invalid_requests == 0


async def test_invalid_requests_lead_to_a_cloudflare_ban(make_emulator: Factory) -> None:
    discord = await make_emulator(rate_limits=ratelimit.RateLimitOptions(invalid_limit=5))
    api, session = await make_api(discord)
    for _ in range(5):
        assert (await api.call("GET", "/users/@me", auth=False))[0] == 401
    status, body, _ = await api.call("GET", "/users/@me")
    assert (status, body) == (429, "error code: 1015")
    await session.close()


async def test_application_commands(api: Api, discord: emulator.DiscordEmulator) -> None:
    app = discord.world.application_id
    guild = discord.add_guild("g")
    commands = [
        {"name": "ping", "description": "Ping", "type": 1},
        {"name": "echo", "description": "Echo"},
    ]
    status, created, _ = await api.call("PUT", f"/applications/{app}/commands", commands)
    assert status == 200
    assert [c["name"] for c in created] == ["ping", "echo"]
    status, again, _ = await api.call("PUT", f"/applications/{app}/commands", commands[:1])
    assert again[0]["id"] == created[0]["id"], "overwriting keeps the ids of unchanged names"
    status, listed, _ = await api.call("GET", f"/applications/{app}/commands")
    assert [c["name"] for c in listed] == ["ping"]
    status, one, _ = await api.call(
        "POST",
        f"/applications/{app}/guilds/{guild['id']}/commands",
        {"name": "local", "description": "d"},
    )
    assert one["guild_id"] == guild["id"]
    status, _body, _ = await api.call("POST", f"/applications/{app}/commands", {"name": "Bad Name"})
    assert status == 400
    status, _, _ = await api.call("DELETE", f"/applications/{app}/commands/{listed[0]['id']}")
    assert status == 204


async def test_interaction_callback_and_followups(
    api: Api, discord: emulator.DiscordEmulator
) -> None:
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    interaction = discord.send_interaction(channel_id, discord.add_user("u"), "ping")
    base = f"/interactions/{interaction.id}/{interaction.token}/callback"
    status, _, _ = await api.call("POST", base, {"type": 5}, auth=False)
    assert status == 204
    status, body, _ = await api.call(
        "POST", base, {"type": 4, "data": {"content": "x"}}, auth=False
    )
    assert (status, body["code"]) == (400, 40060)
    app = discord.world.application_id
    status, _first, _ = await api.call(
        "POST", f"/webhooks/{app}/{interaction.token}", {"content": "done"}, auth=False
    )
    assert status == 200
    assert interaction.original is not None
    assert interaction.original["content"] == "done"
    status, _second, _ = await api.call(
        "POST", f"/webhooks/{app}/{interaction.token}", {"content": "more"}, auth=False
    )
    assert [m["content"] for m in interaction.followups] == ["more"]
    status, edited, _ = await api.call(
        "PATCH",
        f"/webhooks/{app}/{interaction.token}/messages/@original",
        {"content": "edited"},
        auth=False,
    )
    assert edited["content"] == "edited"


async def test_a_modal_is_a_first_response_with_its_documented_data_and_its_submit_is_type_5(
    api: Api, discord: emulator.DiscordEmulator
) -> None:
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    user = discord.add_user("u")
    opened = discord.send_interaction(channel_id, user, "form")
    base = f"/interactions/{opened.id}/{opened.token}/callback"
    status, body, _ = await api.call(
        "POST", base, {"type": 9, "data": {"custom_id": "f", "title": "x" * 46}}, auth=False
    )
    assert (status, sorted(body["errors"]["data"])) == (400, ["components", "title"])
    modal = {
        "custom_id": "f",
        "title": "Feedback",
        "components": [{"type": 1, "components": [{"type": 4, "custom_id": "a", "label": "A"}]}],
    }
    status, _, _ = await api.call("POST", base, {"type": 9, "data": modal}, auth=False)
    assert status == 204
    submit = discord.submit_modal(opened, user, {"a": "typed"})
    assert submit.payload["type"] == 5
    assert submit.payload["data"]["custom_id"] == "f"
    [row] = submit.payload["data"]["components"]
    assert [(c["custom_id"], c["value"]) for c in row["components"]] == [("a", "typed")]
    # MODAL is "not available for MODAL_SUBMIT and PING interactions".
    again = f"/interactions/{submit.id}/{submit.token}/callback"
    status, _, _ = await api.call("POST", again, {"type": 9, "data": modal}, auth=False)
    assert status == 400


async def test_interaction_callback_is_exempt_from_the_global_limit(make_emulator: Factory) -> None:
    discord = await make_emulator(rate_limits=ratelimit.RateLimitOptions(global_limit=1))
    api, session = await make_api(discord)
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    await api.call("GET", "/users/@me")
    assert (await api.call("GET", "/users/@me"))[0] == 429
    interaction = discord.send_interaction(channel_id, discord.add_user("u"), "ping")
    status, _, _ = await api.call(
        "POST",
        f"/interactions/{interaction.id}/{interaction.token}/callback",
        {"type": 4, "data": {"content": "pong"}},
        auth=False,
    )
    assert status == 204
    await session.close()


async def test_interaction_callback_after_three_seconds_is_unknown(
    api: Api, discord: emulator.DiscordEmulator
) -> None:
    guild = discord.add_guild("g")
    channel_id = int(discord.channels_of(int(guild["id"]))[0]["id"])
    interaction = discord.send_interaction(channel_id, discord.add_user("u"), "slow")
    interaction.created_at -= rest.INTERACTION_DEADLINE + 0.1
    status, body, _ = await api.call(
        "POST",
        f"/interactions/{interaction.id}/{interaction.token}/callback",
        {"type": 5},
        auth=False,
    )
    assert (status, body["code"]) == (404, 10062)


async def test_unknown_route(api: Api) -> None:
    assert (await api.call("GET", "/nope"))[0] == 404
