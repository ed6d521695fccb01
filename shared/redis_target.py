"""Which Redis a process talks to, read from ``REDIS_URL``: one server, Sentinel, or a Cluster.

One variable (a secret: ``REDIS_URL_FILE`` works) names all three deployments by its scheme:

- ``redis://[user:password@]host:port/db``, ``rediss://...``, ``unix:///path?db=N``: one server
  (redis-py's own URL);
- ``redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]``: Sentinel; the
  hosts are the sentinels, ``master`` the name they monitor, the credentials the data nodes'
  (``?sentinel_password=`` for sentinels that require one), and the client follows a failover;
- ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster; the hosts are
  startup nodes (any of them finds the rest); a cluster has no database number.

``rediss+sentinel`` and ``rediss+cluster`` use TLS to the data nodes.
"""

from __future__ import annotations

import dataclasses
import typing
import urllib.parse

__all__: typing.Sequence[str] = (
    "CLUSTER",
    "SCHEMES",
    "SENTINEL",
    "STANDALONE",
    "RedisTarget",
    "parse",
)

STANDALONE: typing.Final = "standalone"
SENTINEL: typing.Final = "sentinel"
CLUSTER: typing.Final = "cluster"

_MODES: typing.Final[typing.Mapping[str, tuple[str, bool]]] = {
    "redis": (STANDALONE, False),
    "rediss": (STANDALONE, True),
    "unix": (STANDALONE, False),
    "redis+sentinel": (SENTINEL, False),
    "rediss+sentinel": (SENTINEL, True),
    "redis+cluster": (CLUSTER, False),
    "rediss+cluster": (CLUSTER, True),
}
#: Every scheme ``REDIS_URL`` accepts.
SCHEMES: typing.Final[frozenset[str]] = frozenset(_MODES)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RedisTarget:
    """A parsed ``REDIS_URL``. Holds the credentials: never log it (``repr`` hides them)."""

    mode: str
    #: The URL as given (standalone: handed to redis-py as it is).
    url: str = dataclasses.field(repr=False)
    #: Sentinels or cluster startup nodes; empty for a standalone server.
    hosts: tuple[tuple[str, int], ...] = ()
    #: The name the sentinels monitor (Sentinel only).
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False


def parse(url: str) -> RedisTarget:
    """Read ``url``; raises ``ValueError`` with a message that never quotes it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _MODES:
        wanted = " or ".join(f"{s}://" for s in sorted(SCHEMES))
        msg = f"expected a {wanted} URL"
        raise ValueError(msg)
    mode, tls = _MODES[parts.scheme]
    if mode == STANDALONE:
        return RedisTarget(mode=mode, url=url, tls=tls)
    hosts = _hosts(parts.netloc.rpartition("@")[2])
    path = [p for p in parts.path.split("/") if p]
    query = urllib.parse.parse_qs(parts.query)
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if mode == CLUSTER:
        if path:
            msg = "a redis+cluster:// URL names nodes only (a cluster has no database number)"
            raise ValueError(msg)
        return RedisTarget(
            mode=mode, url=url, hosts=hosts, username=username, password=password, tls=tls
        )
    if not path or len(path) > 2:
        msg = "a redis+sentinel:// URL needs the master's name: redis+sentinel://h:p,h:p/NAME"
        raise ValueError(msg)
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            msg = "the database after the master's name is not a number"
            raise ValueError(msg)
        db = int(path[1])
    sentinel_password = query.get("sentinel_password", [None])[0]
    return RedisTarget(
        mode=mode,
        url=url,
        hosts=hosts,
        master=urllib.parse.unquote(path[0]),
        db=db,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
        tls=tls,
    )


def _hosts(netloc: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in netloc.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = "every host needs host:port with a port number (h1:p1,h2:p2)"
            raise ValueError(msg)
        hosts.append((host.strip("[]"), int(port)))
    return tuple(hosts)
