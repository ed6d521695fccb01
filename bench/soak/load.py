"""Steady, mixed load through the emulated Discord: what users of a real bot do.

Prefix commands (``!soak``), slash commands (``/soak``) and clicks on ``soak:`` buttons are
*commands*: each must be answered once with its event's id. Chatter, member joins and member
updates are load the platform must carry without answering (they exercise the gateways'
cache writes and the workers' event path).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import typing

from bench.soak import plugin

if typing.TYPE_CHECKING:
    from bench.soak import system as system_module
    from playground.discord import rest_state

Json = dict[str, typing.Any]

#: (kind, weight) of what a user does.
MIX: typing.Final = (
    ("prefix", 40),
    ("slash", 20),
    ("button", 15),
    ("chatter", 12),
    ("member-join", 5),
    ("member-update", 8),
)
COMMANDS: typing.Final = frozenset({"prefix", "slash", "button"})


@dataclasses.dataclass(slots=True)
class Sent:
    id: int
    kind: str
    at: float
    """Wall-clock time (the emulator's records use the same clock)."""
    interaction: rest_state.Interaction | None = None


class Load:
    def __init__(self, system: system_module.System, *, rate: float, seed: int) -> None:
        self.system = system
        self.discord = system.discord
        self.rate = rate
        self.random = random.Random(f"load-{seed}")
        self.sent: list[Sent] = []
        self.background: dict[str, int] = {}
        self.users = [self.discord.add_user(f"user-{i}") for i in range(system.layout.users)]
        self.buttons: dict[int, Json] = {}
        self._joined = 0
        self._stopping = asyncio.Event()

    def prepare(self) -> None:
        """One bot message with a ``soak:`` button in every channel, to click on."""
        for channel_id in self.system.channels:
            body = {
                "content": "soak buttons",
                "components": [
                    {"type": 1, "components": [
                        {"type": 2, "style": 1, "label": "go", "custom_id": f"{plugin.BUTTON_PREFIX}go"},
                    ]},
                ],
            }  # fmt: skip
            message = self.discord.rest.post_message(channel_id, self.discord.world.bot_user, body)
            self.buttons[channel_id] = message

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """At ``rate`` a second until stopped; a late tick sends what is due (no omission)."""
        started = time.monotonic()
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        index = 0
        while not self._stopping.is_set():
            delay = started + index / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            index += 1
            self._one(self.random.choices(kinds, weights)[0])

    def _one(self, kind: str) -> None:
        channel_id = self.random.choice(self.system.channels)
        user = self.random.choice(self.users)
        now = time.time()
        if kind == "prefix":
            message = self.discord.send_message(channel_id, user, "!soak")
            self.sent.append(Sent(int(message["id"]), kind, now))
        elif kind == "slash":
            interaction = self.discord.send_interaction(channel_id, user, "soak")
            self.sent.append(Sent(interaction.id, kind, now, interaction))
        elif kind == "button":
            clicked = self.discord.click(
                self.buttons[channel_id], user, f"{plugin.BUTTON_PREFIX}go"
            )
            self.sent.append(Sent(clicked.id, kind, now, clicked))
        elif kind == "chatter":
            self.discord.send_message(channel_id, user, f"hello {self.random.random():.6f}")
        elif kind == "member-join":
            guild_id = self.random.choice(self.system.guilds)
            self._joined += 1
            self.discord.add_member(guild_id, self.discord.add_user(f"joiner-{self._joined}"))
        elif kind == "member-update":
            guild_id = self.random.choice(self.system.guilds)
            member = self.discord.world.members[guild_id].get(int(user["id"]))
            if member is None:
                member = self.discord.add_member(guild_id, user)
            member["nick"] = f"nick-{self.random.randrange(10**6)}"
            self.discord.dispatch(
                "GUILD_MEMBER_UPDATE", {**member, "guild_id": str(guild_id)}, guild_id=guild_id
            )
        self.background[kind] = self.background.get(kind, 0) + 1
