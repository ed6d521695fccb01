"""The Dockerfile, docker-compose.yml and stack.yml say what the code reads, and nothing more."""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import typing
import urllib.parse

import jsonschema
import prometheus_client
import pytest
import yaml

from shared import config, health

ROOT = pathlib.Path(__file__).resolve().parent.parent
APP_SERVICES: typing.Final = ("gateway", "worker")
#: What CoreSettings.secrets() and WorkerSettings hold: never set directly in the stack.
SECRET_VARIABLES: typing.Final = frozenset(
    {"DISCORD_TOKEN", "AMQP_URL", "REDIS_URL", "MONGO_URL", "LAVALINK_PASSWORD", "ADMIN_KEY"}
)


def load(name: str) -> dict[str, typing.Any]:
    return typing.cast("dict[str, typing.Any]", yaml.safe_load((ROOT / name).read_text()))


class Recording(dict[str, str]):
    """An environment that remembers every variable the settings asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: typing.Any = None) -> typing.Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def variables_config_reads() -> set[str]:
    env = Recording(
        {
            "DISCORD_TOKEN": "x.y.z",
            "SHARD_COUNT": "1",
            "LAVALINK_URL": "http://lavalink:2333",  # what is read only beside it, too
            "LAVALINK_PASSWORD": "p",
        }
    )
    config.GatewaySettings.from_env(env)
    config.WorkerSettings.from_env(env)
    return env.asked


def app_services(document: dict[str, typing.Any]) -> dict[str, dict[str, typing.Any]]:
    return {
        name: service
        for name, service in document["services"].items()
        if name.startswith(APP_SERVICES)
    }


@pytest.mark.parametrize("name", ["docker-compose.yml", "stack.yml"])
def test_the_file_follows_the_compose_specification(name: str) -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath(
        "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(load(name), schema)


@pytest.mark.parametrize("name", ["docker-compose.yml", "stack.yml"])
def test_every_variable_set_on_a_service_is_one_the_code_reads(name: str) -> None:
    known = variables_config_reads()
    services = app_services(load(name))
    assert {"gateway", "worker"} <= {n.split("-")[0] for n in services}
    for service_name, service in services.items():
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name}: {service_name} sets {sorted(unknown)} that nothing reads"


def test_the_stack_passes_every_secret_through_a_file() -> None:
    stack = load("stack.yml")
    declared = stack["secrets"]
    for name, service in app_services(stack).items():
        environment = service["environment"]
        assert not SECRET_VARIABLES & set(environment), f"{name} sets a secret directly"
        mounted = {s if isinstance(s, str) else s["source"] for s in service["secrets"]}
        for variable, value in environment.items():
            if variable.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in mounted, f"{name}: {variable} names an unmounted secret"
                assert declared[secret] == {"external": True}
        assert {"DISCORD_TOKEN_FILE", "AMQP_URL_FILE", "REDIS_URL_FILE"} <= set(environment)


@pytest.mark.parametrize("name", ["docker-compose.yml", "stack.yml"])
def test_gateways_hold_the_admin_key_and_workers_never_do(name: str) -> None:
    services = load(name)["services"]
    apps = {n: s for n, s in services.items() if "python" in str(s.get("command", ""))}
    assert set(app_services(load(name))) <= set(apps)
    for service_name, service in apps.items():
        holds = {"ADMIN_KEY", "ADMIN_KEY_FILE"} & set(service.get("environment", {}))
        if service_name.startswith("gateway"):
            assert holds, f"{name}: {service_name} cannot check signed operator actions"
        else:
            assert not holds, f"{name}: {service_name} could sign operator actions"
            assert "admin_key" not in service.get("secrets", [])
    assert any(n.startswith("services") for n in apps) or name == "docker-compose.yml"


def test_the_stack_has_no_default_credentials_and_publishes_only_dashboards() -> None:
    text = (ROOT / "stack.yml").read_text()
    assert not re.search(r"guest|RABBITMQ_DEFAULT_PASS|--requirepass|PASSWORD:\s*[^\s/]", text)
    stack = load("stack.yml")
    published = {name for name, s in stack["services"].items() if s.get("ports")}
    assert published == {"grafana"}
    for name in ("rabbitmq", "redis", "mongo"):
        assert stack["services"][name]["deploy"]["placement"]["constraints"]
    assert stack["networks"]["backend"]["driver"] == "overlay"


def test_rolling_updates_hand_gateways_over_one_at_a_time_and_start_workers_first() -> None:
    services = load("stack.yml")["services"]
    for name in ("gateway-main", "gateway-premium"):
        update = services[name]["deploy"]["update_config"]
        assert update["parallelism"] == 1
        assert update["order"] == "stop-first"
        assert update["delay"]
    assert services["worker"]["deploy"]["update_config"]["order"] == "start-first"
    pools = {s["environment"]["POOL"] for s in app_services(load("stack.yml")).values()}
    assert pools == {"main", "premium"}


def test_images_are_pinned_and_the_image_runs_unprivileged_with_a_healthcheck() -> None:
    for name in ("docker-compose.yml", "stack.yml"):
        for service_name, service in load(name)["services"].items():
            image = service.get("image", "")
            if "shardline:" in image or not image:
                continue
            tag = image.rsplit(":", 1)[-1]
            assert re.match(r"v?\d+\.\d+\.\d+", tag), f"{name}: {service_name} uses {image}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert bases
    assert all(re.search(r":\d+\.\d+\.\d+-slim", base) for base in bases)
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile
    assert "/livez" in dockerfile


# --- health checks ------------------------------------------------------------------------


def healthchecks(name: str) -> dict[str, list[str]]:
    """The container health check of every app service that sets its own."""
    return {
        service_name: service["healthcheck"]["test"]
        for service_name, service in app_services(load(name)).items()
        if "healthcheck" in service
    }


@pytest.mark.parametrize("name", ["docker-compose.yml", "stack.yml"])
def test_health_checks_probe_liveness_on_health_port_in_plain_python(name: str) -> None:
    """/readyz is 503 while a gateway identifies for minutes: a health check on it would have
    the gateway replaced for doing its job."""
    checks = healthchecks(name)
    if name == "stack.yml":
        assert set(checks) == set(app_services(load(name)))
    # Compose sets none: the image's HEALTHCHECK (on /livez, checked below) applies.
    for service_name, test in checks.items():
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: {service_name}"
        assert "/livez" in test[3]
        assert "/readyz" not in test[3]
        assert "HEALTH_PORT" in test[3]
    assert "/readyz" not in (ROOT / name).read_text()


def run_check(code: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ["PATH"], "HEALTH_PORT": str(port)},
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )


async def test_the_stack_health_check_passes_a_live_process_that_is_not_ready() -> None:
    """The stack's command, run against the real health server of a process that is live and
    not ready (a gateway identifying), on a HEALTH_PORT other than 8080."""
    ((_, test), *_) = healthchecks("stack.yml").items()
    alive: list[str | None] = [None]
    server = health.HealthServer(
        0,
        ready=lambda: "identifying 12 of 64 shards",
        alive=lambda: alive[0],
        metrics=prometheus_client.CollectorRegistry(),
        host="127.0.0.1",
    )
    await server.start()
    try:
        assert server.port != 8080
        passed = await asyncio.to_thread(run_check, test[3], server.port)
        assert passed.returncode == 0, passed.stderr
        alive[0] = "shards made no progress for 120 s"
        failed = await asyncio.to_thread(run_check, test[3], server.port)
        assert failed.returncode != 0
        assert "503" in failed.stderr
    finally:
        await server.close()
    unreachable = await asyncio.to_thread(run_check, test[3], server.port)
    assert unreachable.returncode != 0


# --- logs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["docker-compose.yml", "stack.yml"])
def test_every_service_rotates_its_json_file_log(name: str) -> None:
    for service_name, service in load(name)["services"].items():
        logging = service.get("logging")
        assert logging, f"{name}: {service_name} keeps its log unbounded"
        assert logging["driver"] == "json-file"
        size = logging["options"]["max-size"]
        assert re.fullmatch(r"\d+[kmg]", size), f"{name}: {service_name} max-size {size}"
        assert int(logging["options"]["max-file"]) >= 2


# --- users and secrets ----------------------------------------------------------------------


def test_compose_says_it_needs_compose_v2() -> None:
    header = (ROOT / "docker-compose.yml").read_text().split("\nname:", 1)[0]
    assert "Compose v2" in header
    assert "docker-compose` 1.x) cannot" in header


def test_git_ignores_dot_env() -> None:
    """git itself decides: .env (local passwords) never gets committed by accident."""
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", ".env"], check=False
    )
    assert ignored.returncode == 0
    kept = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", ".env.example"], check=False
    )
    assert kept.returncode == 1


def test_the_app_connects_as_its_own_users_never_as_admin_or_root() -> None:
    compose = load("docker-compose.yml")
    services = compose["services"]
    env = services["gateway"]["environment"]
    amqp, mongo = urllib.parse.urlsplit(env["AMQP_URL"]), urllib.parse.urlsplit(env["MONGO_URL"])
    # MongoDB: the app's user lives in the app's database (no authSource=admin), and it is
    # not the root user the image creates.
    assert mongo.username == "shardline"
    assert mongo.path == "/shardline"
    assert "authSource" not in mongo.query
    mongo_env = services["mongo"]["environment"]
    assert mongo_env["MONGO_INITDB_ROOT_USERNAME"] != mongo.username
    assert mongo_env["MONGO_INITDB_ROOT_PASSWORD"] != mongo_env["MONGO_APP_PASSWORD"]
    assert mongo.password == mongo_env["MONGO_APP_PASSWORD"]
    assert "./deploy/mongo/initdb.d:/docker-entrypoint-initdb.d:ro" in services["mongo"]["volumes"]
    # RabbitMQ: the app's user and password are the definitions' app user, not the admin.
    definitions_env = services["rabbitmq-definitions"]["environment"]
    assert amqp.username == "shardline"
    assert amqp.password == definitions_env["RABBITMQ_APP_PASSWORD"]
    assert definitions_env["RABBITMQ_ADMIN_PASSWORD"] != amqp.password
    assert "RABBITMQ_DEFAULT_USER" not in str(compose)


@pytest.mark.parametrize("name", ["docker-compose.yml", "stack.yml"])
def test_the_broker_loads_the_definitions_the_generator_writes(name: str) -> None:
    document = load(name)
    rabbitmq = document["services"]["rabbitmq"]
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    (loaded,) = re.findall(r"^load_definitions = (\S+)$", conf, re.MULTILINE)
    if name == "stack.yml":
        (config,) = rabbitmq["configs"]
        assert document["configs"][config["source"]]["file"] == "./deploy/rabbitmq/rabbitmq.conf"
        assert config["target"].startswith("/etc/rabbitmq/conf.d/")
        (secret,) = rabbitmq["secrets"]
        assert secret["target"] == loaded
        assert document["secrets"][secret["source"]] == {"external": True}
        return
    conf_mount = "./deploy/rabbitmq/rabbitmq.conf:/etc/rabbitmq/conf.d/20-shardline.conf:ro"
    assert conf_mount in rabbitmq["volumes"]
    directory, _, file_name = loaded.rpartition("/")
    (shared_volume,) = (v for v in rabbitmq["volumes"] if v.endswith(f":{directory}:ro"))
    volume = shared_volume.split(":")[0]
    generator = document["services"]["rabbitmq-definitions"]
    written_to = generator["command"][generator["command"].index("--output") + 1]
    (generator_volume,) = (v for v in generator["volumes"] if v.startswith(f"{volume}:"))
    assert written_to == f"{generator_volume.split(':')[1]}/{file_name}"
    assert rabbitmq["depends_on"]["rabbitmq-definitions"] == {
        "condition": "service_completed_successfully"
    }


def test_the_stack_creates_the_app_users_from_secrets_and_files_that_exist() -> None:
    stack = load("stack.yml")
    for name, declared in stack["configs"].items():
        assert (ROOT / declared["file"]).is_file(), f"config {name}: {declared['file']} is missing"
    mongo = stack["services"]["mongo"]
    assert mongo["environment"]["MONGO_APP_PASSWORD_FILE"] == "/run/secrets/mongo_app_password"
    assert "mongo_app_password" in mongo["secrets"]
    (init,) = mongo["configs"]
    assert init["target"] == "/docker-entrypoint-initdb.d/10-app-user.js"
    assert stack["configs"][init["source"]]["file"] == "./deploy/mongo/initdb.d/10-app-user.js"
    for service_name, service in stack["services"].items():
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in stack["secrets"], f"{service_name} mounts undeclared {source}"


def test_the_documented_secrets_are_the_app_users_and_cover_the_stack() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    created = set(re.findall(r"docker secret create (\w+)", operations))
    assert created == set(load("stack.yml")["secrets"])
    (mongo_url,) = re.findall(r'"(mongodb://[^"]+)"', operations)
    assert mongo_url.startswith("mongodb://shardline:")
    assert mongo_url.endswith("@mongo:27017/shardline")
    (amqp_url,) = re.findall(r'"(amqp://[^"]+)"', operations)
    assert amqp_url.startswith("amqp://shardline:")
    assert "definitions.py" in operations


def docker_stack_config(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker client is not installed (its loader needs no engine)")
    return subprocess.run(
        [docker, "stack", "config", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        cwd=ROOT,
    )


def test_the_docker_client_loads_the_stack_as_swarm_would(tmp_path: pathlib.Path) -> None:
    """`docker stack config` (client side, no engine) merges and validates the stack file
    with Docker's own loader; a broken copy shows that it checks."""
    loaded = docker_stack_config(ROOT / "stack.yml")
    assert loaded.returncode == 0, loaded.stderr
    merged = yaml.safe_load(loaded.stdout)
    for name, service in merged["services"].items():
        assert service["logging"]["options"]["max-size"], name
    assert "/livez" in merged["services"]["gateway-main"]["healthcheck"]["test"][3]
    broken = (ROOT / "stack.yml").read_text().replace("max-size: 20m", "max-size: [20m]", 1)
    (tmp_path / "stack.yml").write_text(broken)
    assert docker_stack_config(tmp_path / "stack.yml").returncode != 0
