"""The Dockerfile, docker-compose.yml and stack.yml say what the code reads, and nothing more."""

from __future__ import annotations

import importlib.resources
import json
import pathlib
import re
import typing

import jsonschema
import pytest
import yaml

from shared import config

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
