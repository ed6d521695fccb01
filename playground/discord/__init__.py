"""A Discord gateway + REST emulator on 127.0.0.1, written from Discord's documentation.

Use :class:`playground.discord.emulator.DiscordEmulator`.
"""
