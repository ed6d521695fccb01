"""The node's own REST routes: ``/version``, ``/v4/info`` and ``/v4/stats``."""

from __future__ import annotations

from aiohttp import web

from playground.lavalink import node as node_module
from playground.lavalink import players


async def version(request: web.Request) -> web.Response:
    del request
    return web.Response(text="4.2.2")


async def info(request: web.Request) -> web.Response:
    del request
    return web.json_response(
        {
            "version": {
                "semver": "4.2.2",
                "major": 4,
                "minor": 2,
                "patch": 2,
                "preRelease": None,
                "build": None,
            },
            "buildTime": 1_700_000_000_000,
            "git": {"branch": "emulator", "commit": "0000000", "commitTime": 1_700_000_000_000},
            "jvm": "emulated",
            "lavaplayer": "2.2.6",
            "sourceManagers": ["http", "youtube"],
            "filters": list(players.FILTERS),
            "plugins": [],
        }
    )


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[node_module.NODE].stats())
