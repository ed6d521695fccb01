"""How a gateway or worker finds the playground when it runs without a Discord token.

The playground (``python -m playground``) is a local Discord (and Lavalink) with a web page.
A process started with ``PLAYGROUND_URL`` and no ``DISCORD_TOKEN`` asks it, once at start,
for the bot token it emulates and for the URLs to use; every URL in the answer is built from
the host the process reached the playground by, so it works the same on one machine and
between containers.
"""

from __future__ import annotations

import dataclasses
import json
import time
import typing
import urllib.request

__all__: typing.Sequence[str] = (
    "CONNECT_PATH",
    "Connection",
    "PlaygroundUnavailableError",
    "connect",
)

#: Where the playground answers with a :class:`Connection` (JSON, the field names below).
CONNECT_PATH: typing.Final[str] = "/playground/connect"


class PlaygroundUnavailableError(Exception):
    """Nothing answered at ``PLAYGROUND_URL`` within the wait."""


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    token: str
    api_url: str
    lavalink_url: str | None
    lavalink_password: str | None

    def to_json(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: typing.Any) -> Connection:
        if not isinstance(data, dict):
            raise TypeError("expected a JSON object")
        token, api_url = data.get("token"), data.get("api_url")
        if not isinstance(token, str) or not isinstance(api_url, str):
            raise TypeError("token and api_url must be strings")
        lavalink_url, password = data.get("lavalink_url"), data.get("lavalink_password")
        return cls(
            token=token,
            api_url=api_url,
            lavalink_url=lavalink_url if isinstance(lavalink_url, str) else None,
            lavalink_password=password if isinstance(password, str) else None,
        )


def connect(base_url: str, *, wait: float = 30.0) -> Connection:
    """Ask the playground at ``base_url``, retrying while it starts (blocking, at start-up)."""
    url = base_url.rstrip("/") + CONNECT_PATH
    deadline = time.monotonic() + wait
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http(s) checked by config
                return Connection.from_json(json.loads(response.read()))
        except (OSError, ValueError, TypeError) as exc:
            last = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            raise PlaygroundUnavailableError(f"no playground answered within {wait:.0f} s ({last})")
        time.sleep(0.5)
