"""Frozen settings, parsed once from the environment.

Nothing else in the code base reads ``os.environ``: entry points call ``from_env`` once and
pass the frozen result down. Without a mapping, ``from_env`` reads the process environment
over the working directory's ``.env`` file (``shared.envfile``), as Compose does. Every
secret (the token, passwords, URLs that carry credentials) also accepts ``NAME_FILE``, the
path of a Docker secret. A bad or missing value raises :class:`ConfigError`, whose one-line
message names the variable and never repeats a secret; :func:`load_or_exit` turns that into
one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
import urllib.parse

import hikari

from shared import admin, amqp, envfile, keys, loops, playground, redis_target, sharding
from shared.cache import resources
from shared.secret import Secret

__all__: typing.Sequence[str] = (
    "DEFAULT_INTENTS",
    "ConfigError",
    "CoreSettings",
    "EnvReader",
    "GatewaySettings",
    "OperatorSettings",
    "WorkerSettings",
    "discord_token_given",
    "load_or_exit",
)

T = typing.TypeVar("T")

#: Every non-privileged intent plus the two that prefix commands and the member cache need.
DEFAULT_INTENTS: typing.Final[int] = int(
    hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT | hikari.Intents.GUILD_MEMBERS
)
_NAME_PATTERN: typing.Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_LOG_LEVELS: typing.Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


class ConfigError(Exception):
    """A configuration variable is missing or invalid; the message names it."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class EnvReader:
    """Typed access to an environment mapping, raising :class:`ConfigError` on bad values."""

    __slots__ = ("_env", "_playground")

    def __init__(self, env: typing.Mapping[str, str]) -> None:
        self._env = env
        self._playground: playground.Connection | None = None

    def playground(self) -> playground.Connection | None:
        """The playground's answer when there is no ``DISCORD_TOKEN`` but a ``PLAYGROUND_URL``.

        Asked once per reader (core and Lavalink settings share it); with a token set the
        playground is not used at all.
        """
        url = self.optional("PLAYGROUND_URL")
        if url is None or discord_token_given(self):
            return None
        if self._playground is None:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ConfigError("PLAYGROUND_URL", f"expected an http(s) URL, got {url!r}")
            try:
                wait = self.number("PLAYGROUND_WAIT", 30.0)
                self._playground = playground.connect(url, wait=wait)
            except playground.PlaygroundUnavailableError as exc:
                raise ConfigError("PLAYGROUND_URL", str(exc)) from None
        return self._playground

    def text(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name, "").strip()
        if value:
            return value
        if default is None:
            raise ConfigError(name, "is required but not set")
        return default

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**63) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(name, f"expected a number from {minimum} to {maximum}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"expected a number, got {raw!r}") from None
        if value < minimum or value != value:  # noqa: PLR0124 - NaN is the only value unequal to itself
            raise ConfigError(name, f"expected a number of at least {minimum}, got {raw!r}")
        return value

    def flag(self, name: str, *, default: bool = False) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        value = raw.lower()
        if value in {"1", "true", "yes", "on"}:
            return True
        if value in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(name, f"expected true or false, got {raw!r}")

    def name(self, name: str, default: str) -> str:
        """A short lowercase identifier that is safe inside routing keys and Redis keys."""
        value = self.text(name, default)
        if not _NAME_PATTERN.match(value):
            raise ConfigError(
                name, f"expected lowercase letters, digits and dashes (max 32), got {value!r}"
            )
        return value

    def secret(self, name: str, default: str | None = None) -> Secret:
        """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (Docker secrets)."""
        file_var = f"{name}_FILE"
        direct = self.optional(name)
        path = self.optional(file_var)
        if direct is not None and path is not None:
            raise ConfigError(name, f"set {name} or {file_var}, not both")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as file:  # noqa: PTH123 - one small read at start
                    value = file.read().strip()
            except OSError as exc:
                raise ConfigError(
                    file_var, f"cannot read the secret file: {exc.strerror}"
                ) from None
            if not value:
                raise ConfigError(file_var, "the secret file is empty")
            return Secret(value)
        if direct is not None:
            return Secret(direct)
        if default is None:
            raise ConfigError(name, f"is required but not set (or set {file_var})")
        return Secret(default)

    def optional_secret(self, name: str) -> Secret | None:
        """Like :meth:`secret`, but ``None`` when neither ``NAME`` nor ``NAME_FILE`` is set."""
        if self.optional(name) is None and self.optional(f"{name}_FILE") is None:
            return None
        return self.secret(name)

    def redis_url(self) -> Secret:
        """``REDIS_URL``: one server, Sentinel or a Cluster (``shared.redis_target``)."""
        value = self.secret("REDIS_URL", "redis://127.0.0.1:6379/0")
        try:
            redis_target.parse(value.reveal())
        except ValueError as exc:
            raise ConfigError("REDIS_URL", str(exc)) from None
        return value

    def url(self, name: str, default: str | None, schemes: typing.Collection[str]) -> Secret:
        """A URL that may carry credentials: read like a secret, checked without echoing it."""
        value = self.secret(name, default)
        scheme = urllib.parse.urlsplit(value.reveal()).scheme
        if scheme not in schemes:
            wanted = " or ".join(f"{s}://" for s in sorted(schemes))
            raise ConfigError(name, f"expected a {wanted} URL")
        return value


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CoreSettings:
    """What every Shardline process needs."""

    token: Secret
    api_url: str
    #: The first node of ``AMQP_URL`` (what a single-node tool connects to).
    amqp_url: Secret
    redis_url: Secret
    pool: str
    namespace: str
    log_level: str
    #: ``auto`` (readable on a terminal, JSON otherwise), ``json`` or ``text``.
    log_format: str
    health_port: int
    #: Every node of ``AMQP_URL``, in order (one for a single node or a load balancer).
    amqp_urls: tuple[Secret, ...] = ()
    #: ``AMQP_QUORUM_SIZE``: replicas of each quorum queue declared (None: the broker's default).
    quorum_size: int | None = None
    #: About how many members the pool's cache holds (``CACHE_MEMBERS``): sizes the member
    #: and user buckets (``shared.keys.cache_bucket_bits``).
    cache_members: int = keys.DEFAULT_CACHE_MEMBERS
    #: ``EVENT_LOOP``: ``asyncio`` (the default) or ``uvloop`` (``shared.loops``).
    event_loop: str = loops.DEFAULT

    def redis_keys(self) -> keys.RedisKeys:
        """The pool's key schema, with the bucket layout sized to ``cache_members``."""
        return keys.RedisKeys(
            self.namespace, self.pool, bucket_bits=keys.cache_bucket_bits(self.cache_members)
        )

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str] | None = None) -> CoreSettings:
        read = EnvReader(_environment() if env is None else env)
        return cls._read(read)

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret value, for the log redactor."""
        return (self.token, self.amqp_url, *self.amqp_urls, self.redis_url)

    @classmethod
    def _read(cls, read: EnvReader) -> CoreSettings:
        local = read.playground()
        if local is not None:
            token, api_url = Secret(local.token), local.api_url.rstrip("/")
        else:
            if not discord_token_given(read):
                raise ConfigError(
                    "DISCORD_TOKEN",
                    "is required but not set (or set DISCORD_TOKEN_FILE; or PLAYGROUND_URL to "
                    "run against the playground, python -m playground)",
                )
            token = read.secret("DISCORD_TOKEN")
            api_url = read.text("DISCORD_API_URL", "https://discord.com/api/v10").rstrip("/")
        if any(ch.isspace() for ch in token.reveal()):
            raise ConfigError("DISCORD_TOKEN", "contains whitespace; paste the bare token")
        if urllib.parse.urlsplit(api_url).scheme not in {"http", "https"}:
            raise ConfigError("DISCORD_API_URL", f"expected an http(s) URL, got {api_url!r}")
        log_level = read.text("LOG_LEVEL", "INFO").upper()
        if log_level not in _LOG_LEVELS:
            raise ConfigError("LOG_LEVEL", f"expected one of {', '.join(sorted(_LOG_LEVELS))}")
        log_format = read.text("LOG_FORMAT", "auto").lower()
        if log_format not in {"auto", "json", "text"}:
            raise ConfigError("LOG_FORMAT", f"expected auto, json or text, got {log_format!r}")
        event_loop = read.text("EVENT_LOOP", loops.DEFAULT).lower()
        if event_loop not in loops.CHOICES:
            raise ConfigError(
                "EVENT_LOOP", f"expected {' or '.join(loops.CHOICES)}, got {event_loop!r}"
            )
        where = OperatorSettings._read(read)  # noqa: SLF001 - one reader for both
        return cls(
            token=token,
            api_url=api_url,
            amqp_url=where.amqp_url,
            amqp_urls=where.amqp_urls,
            quorum_size=where.quorum_size,
            redis_url=where.redis_url,
            pool=where.pool,
            namespace=where.namespace,
            log_level=log_level,
            log_format=log_format,
            event_loop=event_loop,
            health_port=read.integer("HEALTH_PORT", 8080, maximum=65535),
            cache_members=read.integer(
                "CACHE_MEMBERS", keys.DEFAULT_CACHE_MEMBERS, minimum=1, maximum=2**32
            ),
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OperatorSettings:
    """Where a pool's shared state lives: what the operator CLI (``shardline``) needs."""

    amqp_url: Secret
    redis_url: Secret
    pool: str
    namespace: str
    admin_key: Secret | None = None
    #: Every node of ``AMQP_URL``; ``amqp_url`` is the first.
    amqp_urls: tuple[Secret, ...] = ()
    quorum_size: int | None = None
    """Signs drains, shard restarts and re-shards (``shared.admin``); read-only without it."""

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str] | None = None) -> OperatorSettings:
        read = EnvReader(_environment() if env is None else env)
        return dataclasses.replace(cls._read(read), admin_key=_read_admin_key(read))

    @classmethod
    def _read(cls, read: EnvReader) -> OperatorSettings:
        raw = read.secret("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
        try:
            nodes = amqp.split_urls(raw.reveal())
        except ValueError as exc:
            raise ConfigError("AMQP_URL", str(exc)) from None
        return cls(
            amqp_url=nodes[0],
            amqp_urls=nodes,
            quorum_size=_read_quorum_size(read, len(nodes)),
            redis_url=read.redis_url(),
            pool=read.name("POOL", "main"),
            namespace=read.name("NAMESPACE", "shardline"),
        )


def _read_quorum_size(read: EnvReader, nodes: int) -> int | None:
    """``AMQP_QUORUM_SIZE``: replicas of each quorum queue the platform declares (RabbitMQ's
    ``x-quorum-initial-group-size``). Unset: ``min(3, nodes)`` when ``AMQP_URL`` names several
    nodes, the broker's own default for one URL."""
    if read.optional("AMQP_QUORUM_SIZE") is None:
        return amqp.default_quorum_size(nodes)
    return read.integer("AMQP_QUORUM_SIZE", 0, minimum=1, maximum=255)


def _read_admin_key(read: EnvReader) -> Secret | None:
    """``ADMIN_KEY`` (or ``ADMIN_KEY_FILE``): the operator's key, held by gateways and
    ``shardline`` only, never by workers. Unset: operator actions are refused."""
    key = read.optional_secret("ADMIN_KEY")
    if key is not None and len(key.reveal()) < admin.MIN_KEY_LENGTH:
        raise ConfigError(
            "ADMIN_KEY",
            f"must be at least {admin.MIN_KEY_LENGTH} characters (openssl rand -hex 32 makes one)",
        )
    return key


def _parse_intents(read: EnvReader) -> int:
    raw = read.optional("INTENTS")
    if raw is None:
        return DEFAULT_INTENTS
    if raw.isdigit():
        value = int(raw)
        if value & ~int(hikari.Intents.ALL):
            raise ConfigError("INTENTS", f"{value} sets bits that are not Discord intents")
        return value
    intents = hikari.Intents.NONE
    for item in raw.replace("|", ",").split(","):
        name = item.strip().upper()
        if not name:
            continue
        try:
            intents |= hikari.Intents[name]
        except KeyError:
            raise ConfigError("INTENTS", f"unknown intent {name!r}") from None
    return int(intents)


def _parse_cache_resources(read: EnvReader) -> int:
    raw = read.optional("CACHE_RESOURCES")
    if raw is None:
        return int(resources.DEFAULT)
    try:
        return int(resources.CacheResource.parse(raw))
    except ValueError as exc:
        raise ConfigError("CACHE_RESOURCES", str(exc)) from None


@dataclasses.dataclass(frozen=True, slots=True)
class LavalinkSettings:
    """Lavalink nodes (``LAVALINK_URL``, comma-separated) and their password."""

    urls: tuple[str, ...]
    password: Secret
    #: Seconds Lavalink keeps a session's players playing while no gateway holds it (hand-off).
    resume_timeout: int = 60

    @classmethod
    def _read(cls, read: EnvReader) -> LavalinkSettings | None:
        raw = read.optional("LAVALINK_URL")
        local = read.playground() if raw is None else None
        if local is not None and local.lavalink_url is not None:
            return cls(
                urls=(local.lavalink_url.rstrip("/"),),
                password=Secret(local.lavalink_password or ""),
                resume_timeout=read.integer("LAVALINK_RESUME_TIMEOUT", 60, minimum=5, maximum=3600),
            )
        if raw is None:
            return None
        urls = tuple(u.strip().rstrip("/") for u in raw.split(",") if u.strip())
        for url in urls:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ConfigError("LAVALINK_URL", f"expected http(s) URLs, got {url!r}")
        if not urls:
            raise ConfigError("LAVALINK_URL", "expected at least one http(s) URL")
        return cls(
            urls=urls,
            password=read.secret("LAVALINK_PASSWORD"),
            resume_timeout=read.integer("LAVALINK_RESUME_TIMEOUT", 60, minimum=5, maximum=3600),
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GatewaySettings:
    """A gateway process: which shards, with which intents, and where Lavalink is."""

    core: CoreSettings
    shard_count: int | None
    """``None`` means ``auto``: take Discord's recommendation from ``/gateway/bot``."""
    shard_ids: tuple[int, ...] | None
    """``None`` means claim shards automatically through Redis leases."""
    intents: int
    lavalink: LavalinkSettings | None
    """``None`` when ``LAVALINK_URL`` is unset: no voice."""
    lease_ttl: int
    """Seconds before an unrenewed shard lease expires and another gateway takes the shard."""
    publish_buffer: int
    """Events held while the broker is slow or away; beyond it the shards' sockets are paused."""
    cache_resources: int
    """What the gateway writes to the shared cache (``shared.cache.resources``)."""
    standby: bool = False
    """A re-shard's new layout: identify beside the old one, publish only once switched."""
    admin_key: Secret | None = None
    """Vouches for operator actions (``shared.admin``); ``None``: every one is refused."""

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str] | None = None) -> GatewaySettings:
        read = EnvReader(_environment() if env is None else env)
        core = CoreSettings._read(read)  # noqa: SLF001 - one reader shared by both sections
        raw_count = read.text("SHARD_COUNT", "auto")
        shard_count: int | None = None
        if raw_count.lower() != "auto":
            shard_count = read.integer("SHARD_COUNT", 1, minimum=1, maximum=1_000_000)
        shard_ids: tuple[int, ...] | None = None
        raw_ids = read.optional("SHARD_IDS")
        if raw_ids is not None:
            try:
                shard_ids = sharding.parse_shard_ids(raw_ids, shard_count)
            except sharding.ShardIdsError as exc:
                raise ConfigError("SHARD_IDS", str(exc)) from None
        standby = read.flag("GATEWAY_STANDBY")
        if standby and (shard_count is None or shard_ids is not None):
            raise ConfigError(
                "GATEWAY_STANDBY",
                "a standby gateway needs a fixed SHARD_COUNT (the new layout) and leased shards",
            )
        return cls(
            core=core,
            shard_count=shard_count,
            shard_ids=shard_ids,
            intents=_parse_intents(read),
            lavalink=LavalinkSettings._read(read),  # noqa: SLF001 - the shared reader
            lease_ttl=read.integer("LEASE_TTL", keys.LEASE_TTL, minimum=3, maximum=600),
            publish_buffer=read.integer("PUBLISH_BUFFER", 50_000, minimum=10),
            cache_resources=_parse_cache_resources(read),
            standby=standby,
            admin_key=_read_admin_key(read),
        )


#: What a worker replica can do (``WORKER_ROLES``).
WORKER_ROLES: typing.Final[frozenset[str]] = frozenset({"events", "services"})


#: Seconds a failed message waits before each retry through the broker (1 s, 5 s, 30 s, 2 min:
#: a Discord 5xx burst of tens of seconds is outlasted); after the last it is dead-lettered.
DEFAULT_RETRY_DELAYS: typing.Final[tuple[float, ...]] = (1.0, 5.0, 30.0, 120.0)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """A worker replica: its group, its plugins, where settings live."""

    core: CoreSettings
    group: str
    mongo_url: Secret
    plugins: tuple[str, ...]
    default_prefix: str
    #: ``redis``: every replica's REST calls share one rate-limit state; ``off``: an external
    #: REST proxy (nirn-proxy ...) at DISCORD_API_URL does the limiting.
    rest_limiter: str
    #: Requests per second the bot may make (Discord's default 50; some bots are raised).
    rest_global_limit: int
    #: ``events``: consume the group's events; ``services``: stand for services' leadership and
    #: run schedules. A services-only Swarm service sets just ``services``.
    roles: frozenset[str] = frozenset(WORKER_ROLES)
    #: Processes for CPU-bound work (``bot.cpu``); at most this many calls run at once.
    cpu_processes: int = 1
    #: Seconds a CPU-bound call may run before its process is killed.
    cpu_timeout: float = 30.0
    #: Lavalink nodes whose players the worker controls (``None``: no voice).
    lavalink: LavalinkSettings | None = None
    #: Seconds a message whose handler failed waits before each retry (``RETRY_DELAYS``,
    #: e.g. ``1,5,30,120``); after the last retry fails it is dead-lettered.
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    #: The intents the gateways identify with (``INTENTS``), as ``shard.intents`` answers.
    intents: int = DEFAULT_INTENTS

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str] | None = None) -> WorkerSettings:
        read = EnvReader(_environment() if env is None else env)
        core = CoreSettings._read(read)  # noqa: SLF001 - one reader shared by both sections
        plugins = tuple(p.strip() for p in read.text("WORKER_PLUGINS", "").split(",") if p.strip())
        for plugin in plugins:
            if not all(part.isidentifier() for part in plugin.split(".")):
                raise ConfigError("WORKER_PLUGINS", f"{plugin!r} is not a module path")
        prefix = read.text("DEFAULT_PREFIX", "!")
        if len(prefix) > 32:
            raise ConfigError("DEFAULT_PREFIX", "must be at most 32 characters")
        limiter = read.text("REST_LIMITER", "redis")
        if limiter not in {"redis", "off"}:
            raise ConfigError("REST_LIMITER", f"expected 'redis' or 'off', got {limiter!r}")
        roles = frozenset(
            r.strip() for r in read.text("WORKER_ROLES", "events,services").split(",")
        )
        if not roles or not roles <= WORKER_ROLES:
            raise ConfigError(
                "WORKER_ROLES", f"expected a list of {', '.join(sorted(WORKER_ROLES))}"
            )
        return cls(
            core=core,
            group=read.name("WORKER_GROUP", "default"),
            mongo_url=read.url(
                "MONGO_URL", "mongodb://127.0.0.1:27017/shardline", {"mongodb", "mongodb+srv"}
            ),
            plugins=plugins,
            default_prefix=prefix,
            rest_limiter=limiter,
            rest_global_limit=read.integer("REST_GLOBAL_LIMIT", 50, minimum=1, maximum=100_000),
            roles=roles,
            cpu_processes=read.integer("CPU_PROCESSES", 1, minimum=1, maximum=256),
            cpu_timeout=read.number("CPU_TIMEOUT", 30.0, minimum=0.001),
            lavalink=LavalinkSettings._read(read),  # noqa: SLF001 - the shared reader
            retry_delays=_retry_delays(
                read.text("RETRY_DELAYS", ",".join(f"{d:g}" for d in DEFAULT_RETRY_DELAYS))
            ),
            intents=_parse_intents(read),
        )


def _retry_delays(raw: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            "RETRY_DELAYS", f"expected seconds like 1,5,30,120, got {raw!r}"
        ) from None
    if not delays or len(delays) > 10 or not all(0.001 <= d <= 86_400 for d in delays):
        raise ConfigError("RETRY_DELAYS", "expected 1 to 10 delays of 0.001 to 86400 seconds each")
    return delays


def discord_token_given(env: typing.Mapping[str, str] | EnvReader | None = None) -> bool:
    """Whether ``DISCORD_TOKEN`` (or ``DISCORD_TOKEN_FILE``) is set: Discord, not the playground."""
    read = env if isinstance(env, EnvReader) else EnvReader(_environment() if env is None else env)
    return any(read.optional(name) is not None for name in ("DISCORD_TOKEN", "DISCORD_TOKEN_FILE"))


def _environment() -> dict[str, str]:
    """The process environment, over the ``.env`` file's values (``shared.envfile``)."""
    try:
        return envfile.environment()
    except envfile.EnvFileError as exc:
        variable, _, reason = str(exc).partition(": ")
        raise ConfigError(variable, reason) from None


def load_or_exit(loader: typing.Callable[[], T], *, program: str) -> T:
    """Build settings, or print one line naming the bad variable and exit with status 2."""
    try:
        return loader()
    except ConfigError as exc:
        sys.stderr.write(f"{program}: configuration error: {exc}\n")
        raise SystemExit(2) from None
