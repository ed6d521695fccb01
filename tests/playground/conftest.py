from __future__ import annotations

import typing

import pytest

from playground.discord import emulator, gateway

Factory = typing.Callable[..., typing.Awaitable[emulator.DiscordEmulator]]


@pytest.fixture
async def make_emulator() -> typing.AsyncIterator[Factory]:
    started: list[emulator.DiscordEmulator] = []

    async def make(**options: typing.Any) -> emulator.DiscordEmulator:
        rate_limits = options.pop("rate_limits", None)
        instance = emulator.DiscordEmulator(
            gateway_options=gateway.GatewayOptions(**options), rate_limits=rate_limits
        )
        await instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.close()


@pytest.fixture
async def discord(make_emulator: Factory) -> emulator.DiscordEmulator:
    return await make_emulator()
