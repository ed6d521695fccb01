"""The playground's JSON API and live feed, without a browser and without the platform."""

from __future__ import annotations

import asyncio
import typing

import aiohttp
import orjson
import pytest

from playground.web import server

if typing.TYPE_CHECKING:
    import collections.abc


Json = dict[str, typing.Any]


@pytest.fixture
async def http() -> collections.abc.AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def state(http: aiohttp.ClientSession, playground: server.Playground) -> Json:
    async with http.get(f"{playground.url}/playground/api/state") as response:
        assert response.status == 200
        return typing.cast("Json", await response.json())


async def post(
    http: aiohttp.ClientSession, playground: server.Playground, path: str, body: typing.Any
) -> tuple[int, Json]:
    async with http.post(f"{playground.url}/playground/api/{path}", json=body) as response:
        return response.status, await response.json()


async def next_event(ws: aiohttp.ClientWebSocketResponse, kind: str) -> Json:
    async with asyncio.timeout(10):
        while True:
            event = orjson.loads((await ws.receive()).data)
            if event["type"] == kind or event.get("kind") == kind:
                return typing.cast("Json", event)


async def test_the_world_has_two_guilds_on_two_shards_and_three_users(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    world = await state(http, playground)
    assert [g["shard"] for g in world["guilds"]] == [0, 1]
    assert [u["username"] for u in world["users"]] == ["alice", "bob", "carol"]
    home = world["guilds"][0]
    assert [(c["name"], c["type"]) for c in home["channels"]] == [
        ("general", 0),
        ("commands", 0),
        ("Lounge", 2),
    ]
    assert world["processes"] is None  # this one runs no gateways or workers


async def test_a_message_typed_on_the_page_is_posted_and_pushed_live(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    world = await state(http, playground)
    channel_id = world["guilds"][0]["channels"][0]["id"]
    alice = world["users"][0]
    async with http.ws_connect(f"{playground.url}/playground/live") as ws:
        status, body = await post(
            http,
            playground,
            "messages",
            {"channel_id": channel_id, "user_id": alice["id"], "content": "hello <@1>"},
        )
        assert status == 200
        event = await next_event(ws, "message")
    assert event["kind"] == "create"
    assert event["message"]["id"] == body["id"]
    assert event["message"]["author"]["name"] == "alice"
    stored = playground.discord.world.messages[int(channel_id)][int(body["id"])]
    assert stored["content"] == "hello <@1>"


async def test_bad_input_gets_a_clear_error_and_changes_nothing(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    world = await state(http, playground)
    channel_id = world["guilds"][0]["channels"][0]["id"]
    voice_id = world["guilds"][0]["channels"][2]["id"]
    alice = world["users"][0]["id"]
    cases: list[tuple[str, typing.Any, str]] = [
        ("messages", {"channel_id": channel_id, "user_id": "7", "content": "x"}, "unknown user"),
        ("messages", {"channel_id": voice_id, "user_id": alice, "content": "x"}, "text channel"),
        ("messages", {"channel_id": channel_id, "user_id": alice, "content": " "}, "type some"),
        ("messages", {"channel_id": channel_id, "user_id": alice, "content": "x" * 2001}, "2000"),
        ("messages", {"channel_id": "1e999", "user_id": alice, "content": "x"}, "snowflake"),
        ("messages", ["not", "an", "object"], "JSON object"),
        ("commands", {"channel_id": channel_id, "user_id": alice, "name": "nope"}, "synced"),
        (
            "components",
            {"channel_id": channel_id, "user_id": alice, "message_id": "5", "custom_id": "a"},
            "unknown message",
        ),
        ("scenarios/reconnect", {"shard": 0}, "not connected"),
        ("scenarios/add-guild", {"shard": 9}, "shard must be from 0 to 1"),
        ("scenarios/add-guild", {"members": "many"}, "whole number"),
        ("scenarios/kill", {"process": "gateway-1"}, "runs no processes"),
    ]
    before = sum(len(m) for m in playground.discord.world.messages.values())
    for path, body, expected in cases:
        status, answer = await post(http, playground, path, body)
        assert status == 400, (path, body)
        assert expected in answer["error"], (path, answer)
    async with http.post(
        f"{playground.url}/playground/api/messages", data=b"{not json"
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "expected a JSON body"
    assert sum(len(m) for m in playground.discord.world.messages.values()) == before


async def test_adding_a_guild_puts_it_on_the_chosen_shard_with_its_members(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    status, body = await post(
        http, playground, "scenarios/add-guild", {"name": "Raid", "members": 25, "shard": 1}
    )
    assert status == 200
    assert body["shard"] == 1
    world = await state(http, playground)
    added = next(g for g in world["guilds"] if g["id"] == body["id"])
    assert added["shard"] == 1
    assert added["members"] == 25 + 3 + 2  # the members, the test users, the owner, the bot
    assert "guild 'Raid' with 25 members added on shard 1" in world["panel"][-1]["text"]


async def test_the_panel_shows_rest_calls_and_an_unanswered_interaction_fails_after_3s(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    discord = playground.discord
    headers = {"Authorization": f"Bot {discord.token}"}
    app_id = discord.world.application_id
    command = {"name": "ping", "description": "Pong", "type": 1}
    async with http.ws_connect(f"{playground.url}/playground/live") as ws:
        async with http.put(
            f"{discord.api_url}/applications/{app_id}/commands", json=[command], headers=headers
        ) as response:
            assert response.status == 200
        entry = await next_event(ws, "rest")
        assert entry["text"].startswith("PUT /applications/{application_id}/commands → 200")
        world = await state(http, playground)
        assert [c["name"] for c in world["commands"]] == ["ping"]
        channel_id = world["guilds"][0]["channels"][0]["id"]
        status, _ = await post(
            http,
            playground,
            "commands",
            {"channel_id": channel_id, "user_id": world["users"][1]["id"], "name": "ping"},
        )
        assert status == 200
        verdict = await next_event(ws, "interaction")
    assert verdict["state"] == "failed"  # no bot here: Discord's "did not respond"
    assert verdict["what"] == "/ping"


async def test_the_connect_answer_uses_the_host_it_was_asked_on(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    port = playground.discord.port
    async with http.get(
        f"{playground.url}/playground/connect", headers={"Host": f"playground:{port}"}
    ) as response:
        answer = await response.json()
    assert answer["token"] == playground.discord.token
    assert answer["api_url"] == f"http://playground:{port}/api/v10"
    assert answer["lavalink_url"] == f"http://playground:{playground.lavalink.port}"
    async with http.get(
        f"{playground.url}/api/v10/gateway", headers={"Host": f"playground:{port}"}
    ) as response:
        assert (await response.json())["url"] == f"ws://playground:{port}/gateway"


async def test_the_page_and_its_files_are_served(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    async with http.get(f"{playground.url}/") as response:
        assert response.status == 200
        page = await response.text()
    assert "<title>Shardline playground</title>" in page
    for asset in ("/static/app.js", "/static/style.css"):
        async with http.get(f"{playground.url}{asset}") as response:
            assert response.status == 200, asset


async def test_a_long_running_playground_keeps_the_last_thousand_messages_per_channel(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    discord = playground.discord
    channel_id = int(discord.channels_of(int(next(iter(discord.world.guilds))))[0]["id"])
    user = playground.users[0]
    for index in range(server.KEPT + 5):
        discord.send_message(channel_id, user, f"n{index}")
    kept = discord.world.messages[channel_id]
    assert len(kept) == server.KEPT
    assert next(iter(kept.values()))["content"] == "n5"
    world = await state(http, playground)
    assert len(world["messages"][str(channel_id)]) == server.HISTORY


async def test_a_modal_the_bot_opens_is_shown_and_submitted_from_the_page(
    http: aiohttp.ClientSession, playground: server.Playground
) -> None:
    discord = playground.discord
    headers = {"Authorization": f"Bot {discord.token}"}
    app_id = discord.world.application_id
    command = {"name": "form", "description": "A form", "type": 1}
    async with http.put(
        f"{discord.api_url}/applications/{app_id}/commands", json=[command], headers=headers
    ) as response:
        assert response.status == 200
    world = await state(http, playground)
    channel_id = world["guilds"][0]["channels"][0]["id"]
    user_id = world["users"][1]["id"]
    async with http.ws_connect(f"{playground.url}/playground/live") as ws:
        status, body = await post(
            http,
            playground,
            "commands",
            {"channel_id": channel_id, "user_id": user_id, "name": "form"},
        )
        assert status == 200
        opened = discord.rest.interactions[int(body["id"])]
        modal = {
            "custom_id": "f",
            "title": "Form",
            "components": [
                {"type": 1, "components": [{"type": 4, "custom_id": "a", "label": "A"}]}
            ],
        }
        async with http.post(  # the bot answers with a modal (callback type 9)
            f"{discord.api_url}/interactions/{opened.id}/{opened.token}/callback",
            json={"type": 9, "data": modal},
        ) as response:
            assert response.status == 204
        shown = await next_event(ws, "interaction")
        assert shown["state"] == "modal"
        assert shown["modal"]["custom_id"] == "f"
        status, _ = await post(
            http, playground, "modals", {"interaction_id": "5", "user_id": user_id, "values": {}}
        )
        assert status == 400
        status, submitted = await post(
            http,
            playground,
            "modals",
            {"interaction_id": str(opened.id), "user_id": user_id, "values": {"a": "typed"}},
        )
        assert status == 200
    submit = discord.rest.interactions[int(submitted["id"])]
    assert submit.payload["type"] == 5
    assert submit.payload["data"]["components"][0]["components"][0]["value"] == "typed"
