"""Application command sync against the emulator: a dry run changes nothing, a sync makes
Discord's list ours, and the next diff of the same code is empty."""

from __future__ import annotations

import asyncio
import os
import sys
import typing

from shared import config
from worker import app

if typing.TYPE_CHECKING:
    from playground.discord import emulator


def settings_for(
    discord: emulator.DiscordEmulator, redis_url: str, namespace: str, plugin: str
) -> config.WorkerSettings:
    return config.WorkerSettings.from_env(
        {
            "DISCORD_TOKEN": discord.token, "DISCORD_API_URL": discord.api_url,
            "REDIS_URL": redis_url, "NAMESPACE": namespace, "WORKER_PLUGINS": plugin,
        }
    )  # fmt: skip


async def test_dry_run_sync_and_the_diff_of_the_next_release(
    discord: emulator.DiscordEmulator, redis_url: str, namespace: str
) -> None:
    first = settings_for(discord, redis_url, namespace, "tests.worker.plugin_commands")
    report = await app.sync_commands(first, dry_run=True)
    assert "+ ban" in report
    assert "+ echo" in report
    assert "+ config" in report
    assert "3 to add, 0 to change, 0 to remove" in report
    assert not [c for c in discord.records.rest if c.method == "PUT"]

    report = await app.sync_commands(first, dry_run=False)
    assert report.endswith("applied")
    puts = [c for c in discord.records.rest if c.method == "PUT"]
    assert len(puts) == 1
    assert {c["name"] for c in puts[0].body} == {"ban", "config", "echo"}
    config = next(c for c in puts[0].body if c["name"] == "config")
    assert [(o["type"], o["name"]) for o in config["options"]] == [(1, "set"), (1, "show")]
    ban = next(c for c in puts[0].body if c["name"] == "ban")
    assert int(ban["default_member_permissions"]) == 4  # BAN_MEMBERS
    echo = next(c for c in puts[0].body if c["name"] == "echo")
    times = next(o for o in echo["options"] if o["name"] == "times")
    assert (times["min_value"], times["max_value"], times["required"]) == (1, 3, False)

    again = await app.sync_commands(first, dry_run=True)
    assert "0 to add, 0 to change, 0 to remove, 3 unchanged" in again

    second = settings_for(discord, redis_url, namespace, "tests.worker.plugin_commands_v2")
    report = await app.sync_commands(second, dry_run=True)
    assert "+ ping" in report
    assert "~ echo" in report
    assert "- ban" in report
    assert "- config" in report


async def test_the_command_line_entry_prints_the_plan(
    discord: emulator.DiscordEmulator, redis_url: str, namespace: str
) -> None:
    env = {
        **os.environ, "DISCORD_TOKEN": discord.token, "DISCORD_API_URL": discord.api_url,
        "REDIS_URL": redis_url, "NAMESPACE": namespace,
        "WORKER_PLUGINS": "tests.worker.plugin_commands", "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    # The emulator runs on this event loop: the process must not block it.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "sync-commands", "--dry-run",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert "3 to add" in out.decode()
    assert "dry run: nothing changed" in out.decode()


async def test_context_menus_and_localisations_sync_and_then_diff_clean(
    discord: emulator.DiscordEmulator, redis_url: str, namespace: str
) -> None:
    settings = settings_for(discord, redis_url, namespace, "tests.worker.plugin_commands_routes")
    report = await app.sync_commands(settings, dry_run=False)
    assert report.endswith("applied")
    (put,) = [c for c in discord.records.rest if c.method == "PUT"]
    by_name = {c["name"]: c for c in put.body}
    assert (by_name["Report user"]["type"], by_name["Quote"]["type"]) == (2, 3)
    assert "description" not in by_name["Report user"]  # Discord forbids one
    assert by_name["Report user"]["name_localizations"] == {"fr": "Signaler"}
    inspect = by_name["inspect"]
    assert inspect["name_localizations"] == {"fr": "inspecter", "de": "untersuchen"}
    options = {o["name"]: o for o in inspect["options"]}
    assert options["where"]["channel_types"] == [0]  # GUILD_TEXT, from the annotation
    assert options["where"]["name_localizations"] == {"fr": "salon"}
    assert [options[n]["type"] for n in ("someone", "role", "file")] == [9, 8, 11]
    tools = by_name["tools"]
    assert tools["description_localizations"] == {"fr": "Des outils"}
    assert tools["options"][0]["name_localizations"] == {"fr": "heure"}  # a subcommand's

    # hikari asks with ?with_localizations=true: what Discord stored compares equal to ours.
    again = await app.sync_commands(settings, dry_run=True)
    assert "0 to add, 0 to change, 0 to remove, 8 unchanged" in again
