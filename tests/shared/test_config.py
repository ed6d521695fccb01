from __future__ import annotations

import typing

import hikari
import hypothesis
import pytest
from hypothesis import strategies as st

from shared import config
from shared.secret import Secret

if typing.TYPE_CHECKING:
    import pathlib

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789"


def env(**values: str) -> dict[str, str]:
    return {"DISCORD_TOKEN": TOKEN, **values}


def test_defaults() -> None:
    settings = config.GatewaySettings.from_env(env())
    assert settings.core.token.reveal() == TOKEN
    assert settings.core.api_url == "https://discord.com/api/v10"
    assert settings.core.pool == "main"
    assert settings.shard_count is None
    assert settings.shard_ids is None
    intents = hikari.Intents(settings.intents)
    assert intents & hikari.Intents.MESSAGE_CONTENT
    assert intents & hikari.Intents.GUILD_MEMBERS
    assert not intents & hikari.Intents.GUILD_PRESENCES
    worker = config.WorkerSettings.from_env(env())
    assert worker.default_prefix == "!"
    assert worker.plugins == ()


def test_cache_members_size_the_bucket_layout() -> None:
    default = config.CoreSettings.from_env(env())
    assert default.cache_members == 1_000_000
    assert default.redis_keys().bucket_bits == 14
    small = config.CoreSettings.from_env(env(CACHE_MEMBERS="20000", POOL="premium"))
    assert small.redis_keys().bucket_bits == 9
    assert small.redis_keys().pool == "premium"


def test_settings_are_frozen() -> None:
    settings = config.CoreSettings.from_env(env())
    with pytest.raises(AttributeError):
        settings.pool = "other"  # type: ignore[misc]


def test_gateway_values() -> None:
    settings = config.GatewaySettings.from_env(
        env(SHARD_COUNT="16", SHARD_IDS="0-3,8", INTENTS="GUILDS,GUILD_MESSAGES", POOL="premium")
    )
    assert settings.shard_count == 16
    assert settings.shard_ids == (0, 1, 2, 3, 8)
    assert settings.intents == int(hikari.Intents.GUILDS | hikari.Intents.GUILD_MESSAGES)
    assert settings.core.pool == "premium"
    assert config.GatewaySettings.from_env(env(INTENTS="513")).intents == 513


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"DISCORD_TOKEN": ""}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "a b"}, "DISCORD_TOKEN"),
        ({"SHARD_COUNT": "zero"}, "SHARD_COUNT"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0-4"}, "SHARD_IDS"),
        ({"SHARD_IDS": "x"}, "SHARD_IDS"),
        ({"INTENTS": "NOPE"}, "INTENTS"),
        ({"INTENTS": str(1 << 40)}, "INTENTS"),
        ({"POOL": "Main.pool"}, "POOL"),
        ({"AMQP_URL": "http://x"}, "AMQP_URL"),
        ({"REDIS_URL": "mysql://x"}, "REDIS_URL"),
        ({"HEALTH_PORT": "70000"}, "HEALTH_PORT"),
        ({"CACHE_MEMBERS": "0"}, "CACHE_MEMBERS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DISCORD_API_URL": "ftp://x"}, "DISCORD_API_URL"),
        ({"LAVALINK_URL": "http://ll:2333"}, "LAVALINK_PASSWORD"),
        ({"ADMIN_KEY": "short"}, "ADMIN_KEY"),
    ],
)
def test_bad_values_name_the_variable(values: dict[str, str], variable: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.GatewaySettings.from_env(env(**values))
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"WORKER_PLUGINS": "good.module, bad-module"}, "WORKER_PLUGINS"),
        ({"MONGO_URL": "redis://x"}, "MONGO_URL"),
        ({"WORKER_GROUP": "UPPER"}, "WORKER_GROUP"),
        ({"WORKER_ROLES": "events,cron"}, "WORKER_ROLES"),
        ({"CPU_PROCESSES": "0"}, "CPU_PROCESSES"),
        ({"CPU_TIMEOUT": "soon"}, "CPU_TIMEOUT"),
    ],
)
def test_bad_worker_values_name_the_variable(values: dict[str, str], variable: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.WorkerSettings.from_env(env(**values))
    assert caught.value.variable == variable


def test_secret_from_file(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    settings = config.CoreSettings.from_env({"DISCORD_TOKEN_FILE": str(secret)})
    assert settings.token.reveal() == TOKEN
    url = tmp_path / "amqp"
    url.write_text("amqp://user:s3cret@rabbit:5672/")
    settings = config.CoreSettings.from_env(env(AMQP_URL_FILE=str(url)))
    assert settings.amqp_url.reveal() == "amqp://user:s3cret@rabbit:5672/"


def test_the_admin_key_is_for_gateways_and_the_cli_never_workers(tmp_path: pathlib.Path) -> None:
    key = "k" * 64
    assert config.GatewaySettings.from_env(env(ADMIN_KEY=key)).admin_key == Secret(key)
    assert config.GatewaySettings.from_env(env()).admin_key is None
    path = tmp_path / "admin_key"
    path.write_text(key + "\n")
    operator = config.OperatorSettings.from_env({"ADMIN_KEY_FILE": str(path)})
    assert operator.admin_key == Secret(key)
    assert key not in repr(operator)
    worker = config.WorkerSettings.from_env(env(ADMIN_KEY=key))
    assert not hasattr(worker, "admin_key")
    assert not hasattr(worker.core, "admin_key")
    with pytest.raises(config.ConfigError) as caught:
        config.OperatorSettings.from_env({"ADMIN_KEY": "x" * 31})
    assert str(caught.value).startswith("ADMIN_KEY: must be at least 32 characters")
    assert "x" * 31 not in str(caught.value)


def test_secret_file_errors_name_the_file_variable(tmp_path: pathlib.Path) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.CoreSettings.from_env({"DISCORD_TOKEN_FILE": str(tmp_path / "missing")})
    assert caught.value.variable == "DISCORD_TOKEN_FILE"
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(config.ConfigError, match="empty"):
        config.CoreSettings.from_env({"DISCORD_TOKEN_FILE": str(empty)})
    with pytest.raises(config.ConfigError, match="not both"):
        config.CoreSettings.from_env(env(DISCORD_TOKEN_FILE=str(empty)))


def test_errors_and_reprs_never_show_secrets() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.CoreSettings.from_env(env(AMQP_URL="http://user:hunter2@rabbit/"))
    assert "hunter2" not in str(caught.value)
    settings = config.CoreSettings.from_env(env(REDIS_URL="redis://:hunter2@redis:6379/0"))
    assert "hunter2" not in repr(settings)
    assert TOKEN not in repr(settings)


def test_load_or_exit_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        config.load_or_exit(lambda: config.GatewaySettings.from_env({}), program="gateway")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    expected = (
        "DISCORD_TOKEN: is required but not set (or set DISCORD_TOKEN_FILE; or PLAYGROUND_URL "
        "to run against the playground, python -m playground)"
    )
    assert err == f"gateway: configuration error: {expected}\n"


def test_rest_limiter_is_redis_or_off() -> None:
    base = {"DISCORD_TOKEN": "a.b.c"}
    assert config.WorkerSettings.from_env(base).rest_limiter == "redis"
    assert config.WorkerSettings.from_env({**base, "REST_LIMITER": "off"}).rest_limiter == "off"
    with pytest.raises(config.ConfigError, match="REST_LIMITER"):
        config.WorkerSettings.from_env({**base, "REST_LIMITER": "nirn"})
    with pytest.raises(config.ConfigError, match="REST_GLOBAL_LIMIT"):
        config.WorkerSettings.from_env({**base, "REST_GLOBAL_LIMIT": "0"})


def test_worker_roles_and_cpu_pool() -> None:
    base = {"DISCORD_TOKEN": "a.b.c"}
    worker = config.WorkerSettings.from_env(base)
    assert (worker.roles, worker.cpu_processes) == (frozenset({"events", "services"}), 1)
    services_only = config.WorkerSettings.from_env({**base, "WORKER_ROLES": " services "})
    assert services_only.roles == frozenset({"services"})


def test_retry_delays_are_seconds_in_order_of_use() -> None:
    base = {"DISCORD_TOKEN": "a.b.c"}
    assert config.WorkerSettings.from_env(base).retry_delays == (1.0, 5.0, 30.0, 120.0)
    scaled = config.WorkerSettings.from_env({**base, "RETRY_DELAYS": "0.1, 0.5,2"})
    assert scaled.retry_delays == (0.1, 0.5, 2.0)
    for bad in ("soon", "0", "1,-5", "nan", "1e9", ",".join(["1"] * 11)):
        with pytest.raises(config.ConfigError, match="RETRY_DELAYS"):
            config.WorkerSettings.from_env({**base, "RETRY_DELAYS": bad})


def test_lavalink_nodes_for_gateways_and_workers() -> None:
    base = {"DISCORD_TOKEN": "a.b.c", "LAVALINK_PASSWORD": "pw"}
    two = {**base, "LAVALINK_URL": "http://a:2333, https://b:443/"}
    gateway = config.GatewaySettings.from_env(two)
    worker = config.WorkerSettings.from_env(two)
    assert gateway.lavalink is not None
    assert gateway.lavalink.urls == ("http://a:2333", "https://b:443")
    assert worker.lavalink == gateway.lavalink
    assert "pw" not in repr(worker.lavalink)
    assert config.WorkerSettings.from_env(base).lavalink is None
    with pytest.raises(config.ConfigError, match="LAVALINK_URL"):
        config.GatewaySettings.from_env({**base, "LAVALINK_URL": "ws://a:2333"})
    with pytest.raises(config.ConfigError, match="LAVALINK_RESUME_TIMEOUT"):
        config.GatewaySettings.from_env({**two, "LAVALINK_RESUME_TIMEOUT": "1"})


def test_event_loop_is_asyncio_unless_asked_and_anything_else_names_the_variable() -> None:
    base = {"DISCORD_TOKEN": TOKEN}
    assert config.WorkerSettings.from_env(base).core.event_loop == "asyncio"
    assert config.GatewaySettings.from_env({**base, "EVENT_LOOP": "UVloop"}).core.event_loop == (
        "uvloop"
    )
    with pytest.raises(config.ConfigError, match=r"^EVENT_LOOP: expected asyncio or uvloop"):
        config.WorkerSettings.from_env({**base, "EVENT_LOOP": "trio"})


# --- fuzzing: any environment gives settings, or one line naming the variable ------------------

_VARIABLES = (
    "ADMIN_KEY", "AMQP_URL", "CACHE_RESOURCES", "CPU_PROCESSES", "CPU_TIMEOUT", "DEFAULT_PREFIX",
    "DISCORD_API_URL", "DISCORD_TOKEN", "HEALTH_PORT", "INTENTS", "LAVALINK_PASSWORD",
    "LAVALINK_RESUME_TIMEOUT", "LAVALINK_URL", "LEASE_TTL", "LOG_FORMAT", "LOG_LEVEL",
    "NAMESPACE", "POOL", "PUBLISH_BUFFER", "REST_GLOBAL_LIMIT", "REST_LIMITER", "SHARD_COUNT",
    "SHARD_IDS", "WORKER_GROUP", "WORKER_PLUGINS", "WORKER_ROLES", "MONGO_URL", "REDIS_URL",
    "RETRY_DELAYS", "AMQP_QUORUM_SIZE", "CACHE_MEMBERS", "EVENT_LOOP",
)  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["0", "-1", "1e9", "auto", "all", "none", "0-7", "3-1", "http://x:1", " "]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


@hypothesis.given(st.dictionaries(st.sampled_from(_VARIABLES), _VALUES, max_size=8))
@hypothesis.settings(max_examples=300)
def test_fuzz_any_environment_is_settings_or_one_clear_line(values: dict[str, str]) -> None:
    environment = {"DISCORD_TOKEN": TOKEN, **values}
    secrets = (
        "DISCORD_TOKEN", "LAVALINK_PASSWORD", "AMQP_URL", "REDIS_URL", "MONGO_URL", "ADMIN_KEY",
    )  # fmt: skip
    plain = {value for name, value in environment.items() if name not in secrets}
    secret_values = {
        environment[name]
        for name in secrets
        if len(environment.get(name, "")) >= 8 and environment[name] not in plain
    }
    for kind in (config.GatewaySettings, config.WorkerSettings, config.OperatorSettings):
        try:
            kind.from_env(environment)
        except config.ConfigError as exc:
            error = exc
        else:
            continue
        message = str(error)
        assert error.variable in {*_VARIABLES, *(f"{v}_FILE" for v in _VARIABLES)}
        assert message.startswith(error.variable)
        assert "\n" not in message
        assert not any(secret in message for secret in secret_values)


def test_workers_know_the_configured_intents() -> None:
    """Issue 23 item 5: workers read ``INTENTS`` (``shard.intents`` answers it)."""
    base = {"DISCORD_TOKEN": "a.b.c"}
    assert config.WorkerSettings.from_env(base).intents == config.DEFAULT_INTENTS
    chosen = config.WorkerSettings.from_env({**base, "INTENTS": "GUILDS,GUILD_MESSAGES"})
    wanted = hikari.Intents.GUILDS | hikari.Intents.GUILD_MESSAGES
    assert chosen.intents == wanted


# --- AMQP_URL naming the nodes of a RabbitMQ cluster -------------------------------------------

CLUSTER_URLS = "amqp://u:s3cretpw@rabbit-0:5672/, amqp://u:s3cretpw@rabbit-1:5672/,amqps://u:s3cretpw@rabbit-2/"


def test_cluster_amqp_url_lists_nodes_in_order_with_three_replicas() -> None:
    settings = config.CoreSettings.from_env(env(AMQP_URL=CLUSTER_URLS))
    hosts = [url.reveal().split("@")[1] for url in settings.amqp_urls]
    assert hosts == ["rabbit-0:5672/", "rabbit-1:5672/", "rabbit-2/"]
    assert settings.amqp_url == settings.amqp_urls[0]
    assert settings.quorum_size == 3
    two = config.CoreSettings.from_env(env(AMQP_URL=CLUSTER_URLS.rsplit(",", 1)[0]))
    assert two.quorum_size == 2  # min(3, nodes)
    # One URL (one node, or a load balancer in front of many): the broker's own default.
    assert config.CoreSettings.from_env(env()).quorum_size is None
    sized = config.CoreSettings.from_env(env(AMQP_URL=CLUSTER_URLS, AMQP_QUORUM_SIZE="5"))
    assert sized.quorum_size == 5
    operator = config.OperatorSettings.from_env(env(AMQP_URL=CLUSTER_URLS))
    assert len(operator.amqp_urls) == 3


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("amqp://u:s3cretpw@a/,,amqp://u:s3cretpw@b/", "has an empty entry"),
        ("amqp://u:s3cretpw@a/,", "has an empty entry"),
        ("amqp://u:s3cretpw@a/,http://u:s3cretpw@b/", "entry 2 of 2: expected an amqp://"),
        ("amqp://u:s3cretpw@a/,amqp://u:s3cretpw@b:port/", "entry 2 of 2: its port is not"),
        ("amqp://u:s3cretpw@a/,amqp:///", "entry 2 of 2: has no host"),
        ("amqp://u:s3cretpw@a/,amqp://u:s3cretpw@a/", "names the same node twice"),
    ],
)
def test_cluster_amqp_url_bad_entries_stop_with_one_line(value: str, reason: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.CoreSettings.from_env(env(AMQP_URL=value))
    message = str(caught.value)
    assert message.startswith("AMQP_URL: ")
    assert reason in message
    assert "s3cretpw" not in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["0", "-1", "three", "256"])
def test_cluster_quorum_size_bad_values_name_the_variable(value: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.CoreSettings.from_env(env(AMQP_URL=CLUSTER_URLS, AMQP_QUORUM_SIZE=value))
    assert caught.value.variable == "AMQP_QUORUM_SIZE"


def test_cluster_every_node_url_is_a_secret_for_the_log_redactor() -> None:
    settings = config.CoreSettings.from_env(env(AMQP_URL=CLUSTER_URLS))
    revealed = {secret.reveal() for secret in settings.secrets()}
    assert {url.reveal() for url in settings.amqp_urls} <= revealed
    assert "s3cretpw" not in repr(settings)
