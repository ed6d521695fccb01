"""REST routes of tracks: ``/v4/loadtracks`` (by identifier, URL or search), and
``/v4/decodetrack(s)``."""

from __future__ import annotations

import typing

from aiohttp import web

from playground.lavalink import node as node_module
from playground.lavalink import rest, tracks

Json = dict[str, typing.Any]


def _loaded(info: tracks.TrackInfo) -> Json:
    return tracks.track_json(tracks.encode(info), info)


async def loadtracks(request: web.Request) -> web.Response:
    node = request.app[node_module.NODE]
    identifier = request.query.get("identifier")
    if identifier is None:
        raise rest.HTTPError(400, "Required parameter 'identifier' is not present.")
    node.requests.append(("GET", request.path_qs, None))
    prefix, _, query = identifier.partition(":")
    if prefix in {"ytsearch", "ytmsearch", "scsearch"} and query:
        words = query.lower().split()
        found = [
            _loaded(info)
            for info in node.catalog.values()
            if all(w in info.title.lower() for w in words)
        ]
        if found:
            return web.json_response({"loadType": "search", "data": found})
        return web.json_response({"loadType": "empty", "data": None})
    if identifier.startswith("error:"):
        return web.json_response(
            {
                "loadType": "error",
                "data": {
                    "message": "Something went wrong while looking up the track.",
                    "severity": "fault",
                    "cause": "java.lang.RuntimeException: emulated",
                    "causeStackTrace": "",
                },
            }
        )
    for info in node.catalog.values():
        if identifier in {info.identifier, info.uri}:
            return web.json_response({"loadType": "track", "data": _loaded(info)})
    return web.json_response({"loadType": "empty", "data": None})


async def decodetrack(request: web.Request) -> web.Response:
    request.app[node_module.NODE]
    encoded = request.query.get("encodedTrack") or request.query.get("track")
    if not encoded:
        raise rest.HTTPError(400, "No track to decode provided")
    return web.json_response(_decoded(encoded))


async def decodetracks(request: web.Request) -> web.Response:
    request.app[node_module.NODE]
    try:
        body = await request.json()
    except ValueError:
        raise rest.HTTPError(400, "Malformed JSON request body") from None
    if not isinstance(body, list) or not body:
        raise rest.HTTPError(400, "No tracks to decode provided")
    return web.json_response([_decoded(str(e)) for e in body])


def _decoded(encoded: str) -> Json:
    try:
        return tracks.track_json(encoded, tracks.decode(encoded))
    except ValueError as exc:
        raise rest.HTTPError(500, f"Failed to decode track: {exc}") from None
