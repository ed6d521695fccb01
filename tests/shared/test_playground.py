"""A gateway or worker without a token finds its Discord (and Lavalink) at PLAYGROUND_URL."""

from __future__ import annotations

import asyncio
import socket
import time
import typing

import pytest

from shared import config

if typing.TYPE_CHECKING:
    from playground.web import server


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_without_a_token_the_settings_come_from_the_playground(
    playground: server.Playground,
) -> None:
    env = {"PLAYGROUND_URL": playground.url}
    # from_env blocks (once, at start-up): off the loop the playground runs on.
    settings = await asyncio.to_thread(config.WorkerSettings.from_env, env)
    assert settings.core.token.reveal() == playground.discord.token
    assert settings.core.api_url == playground.discord.api_url
    assert settings.lavalink is not None
    assert settings.lavalink.urls == (playground.lavalink.url,)
    assert settings.lavalink.password.reveal() == playground.lavalink.password


async def test_urls_are_built_on_the_host_the_process_reached_the_playground_by(
    playground: server.Playground,
) -> None:
    url = f"http://localhost:{playground.discord.port}"
    settings = await asyncio.to_thread(config.GatewaySettings.from_env, {"PLAYGROUND_URL": url})
    assert settings.core.api_url == f"http://localhost:{playground.discord.port}/api/v10"
    assert settings.lavalink is not None
    assert settings.lavalink.urls == (f"http://localhost:{playground.lavalink.port}",)


def test_a_token_wins_and_the_playground_is_not_asked() -> None:
    env = {
        "DISCORD_TOKEN": "a.b.c",
        "PLAYGROUND_URL": f"http://127.0.0.1:{closed_port()}",
        "LAVALINK_URL": "http://lavalink:2333",
        "LAVALINK_PASSWORD": "p",
    }
    settings = config.WorkerSettings.from_env(env)
    assert settings.core.api_url == "https://discord.com/api/v10"
    assert settings.lavalink is not None
    assert settings.lavalink.urls == ("http://lavalink:2333",)


def test_an_absent_playground_stops_the_process_with_one_line_naming_the_variable() -> None:
    env = {"PLAYGROUND_URL": f"http://127.0.0.1:{closed_port()}", "PLAYGROUND_WAIT": "0.3"}
    started = time.monotonic()
    with pytest.raises(config.ConfigError) as caught:
        config.CoreSettings.from_env(env)
    assert caught.value.variable == "PLAYGROUND_URL"
    assert "no playground answered within" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert time.monotonic() - started < 5


def test_a_playground_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.CoreSettings.from_env({"PLAYGROUND_URL": "amqp://playground:8000"})
    assert caught.value.variable == "PLAYGROUND_URL"


def test_neither_token_nor_playground_names_both_ways_out() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.CoreSettings.from_env({})
    assert caught.value.variable == "DISCORD_TOKEN"
    assert "PLAYGROUND_URL" in str(caught.value)
