"""What the router tells the 2-second auto-defer: which interactions may open a modal."""

from __future__ import annotations

from tests.worker import plugin_commands_routes
from worker import bot as bot_module


def test_only_handlers_declared_to_open_a_modal_escape_the_auto_defer() -> None:
    bot = bot_module.Bot()
    plugin_commands_routes.setup(bot)
    opens = bot.commands.opens_modal

    def click(custom_id: str) -> bool:
        return opens({"type": 3, "data": {"custom_id": custom_id, "component_type": 2}})

    assert click("rate:tea")
    assert not click("vote:tea:yes")
    assert not click("nobody:routes:this")
    assert opens({"type": 2, "data": {"name": "feedback", "type": 1}})
    assert not opens({"type": 2, "data": {"name": "poll", "type": 1}})
    assert not opens({"type": 2, "data": {"name": "Quote", "type": 3}})
    assert not opens({"type": 5, "data": {"custom_id": "feedback:tea"}})  # a modal's answer


def test_every_kind_of_command_is_synced_and_menus_keep_their_own_names() -> None:
    bot = bot_module.Bot()
    plugin_commands_routes.setup(bot)
    synced = {(int(c.type), c.name) for c in bot.commands.synced()}
    assert (2, "Report user") in synced
    assert (3, "Quote") in synced
    assert (1, "inspect") in synced
    assert "Quote" not in bot.commands.commands  # a menu is no prefix command
