"""hikari-arc's quick-start ("Basic Usage" of its README, hikari-arc 2.3.2) as a worker plugin.

Only the entry point changed: ``bot = hikari.GatewayBot("TOKEN")`` and ``bot.run()`` became
Shardline's ``setup(bot)``; the body is arc's own, unchanged.
"""

import arc
import hikari


def setup(bot):  # noqa: ANN001, ANN201 - the quick-start's code, as arc wrote it
    client = arc.GatewayClient(bot)  # or arc.RESTClient

    @client.include
    @arc.slash_command("hi", "Say hi!")
    async def ping(
        ctx: arc.GatewayContext,
        user: arc.Option[hikari.User, arc.UserParams("The user to say hi to.")],
    ) -> None:
        await ctx.respond(f"Hey {user.mention}!")
