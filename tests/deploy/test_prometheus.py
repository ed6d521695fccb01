"""deploy/prometheus: the scrape configurations and alert rules, checked by promtool."""

from __future__ import annotations

import typing

import pytest
import yaml

from tests.deploy import exported

if typing.TYPE_CHECKING:
    import pathlib

PROMETHEUS: typing.Final = exported.DEPLOY / "prometheus"
#: Which scrape config each file is mounted with.
CONFIGS: typing.Final = {
    "stack.yml": "prometheus.yml",
    "docker-compose.yml": "prometheus.compose.yml",
}
APP_COMMANDS: typing.Final = {"gateway": "gateway", "worker": "worker"}


def load(path: pathlib.Path) -> dict[str, typing.Any]:
    return typing.cast("dict[str, typing.Any]", yaml.safe_load(path.read_text()))


def dns_names(config: dict[str, typing.Any], job: str) -> set[str]:
    (scrape,) = (s for s in config["scrape_configs"] if s["job_name"] == job)
    return {name for sd in scrape["dns_sd_configs"] for name in sd["names"]}


def long_running_apps(document: dict[str, typing.Any]) -> dict[str, str]:
    """Every gateway or worker service that runs for good (not a one-shot), by role."""
    found = {}
    for name, service in document["services"].items():
        command = service.get("command", [])
        if command[:2] == ["python", "-m"] and command[2] in APP_COMMANDS and len(command) == 3:
            found[name] = APP_COMMANDS[command[2]]
    return found


@pytest.mark.parametrize("name", sorted(CONFIGS.values()))
def test_promtool_accepts_the_config_and_the_rules_it_loads(name: str) -> None:
    result = exported.promtool("check", "config", PROMETHEUS / name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_accepts_the_rules() -> None:
    result = exported.promtool("check", "rules", PROMETHEUS / "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_on_its_series_and_not_on_look_alikes() -> None:
    """alerts.test.yml: promtool feeds series and checks each alert at given times."""
    result = exported.promtool("test", "rules", PROMETHEUS / "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        case["alertname"]
        for test in load(PROMETHEUS / "alerts.test.yml")["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    rules = {r["alert"] for g in load(PROMETHEUS / "alerts.yml")["groups"] for r in g["rules"]}
    assert rules == tested, f"alerts never seen firing in a test: {sorted(rules - tested)}"


def test_the_unit_tests_catch_a_broken_rule(tmp_path: pathlib.Path) -> None:
    """The tests bite: the same tests against a rule with a wrong threshold fail."""
    rules = (PROMETHEUS / "alerts.yml").read_text()
    broken = rules.replace(
        "shardline_worker_rest_limiter_shared) == 0", "shardline_worker_rest_limiter_shared) == 2"
    )
    assert broken != rules
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts.test.yml").write_text((PROMETHEUS / "alerts.test.yml").read_text())
    result = exported.promtool("test", "rules", tmp_path / "alerts.test.yml")
    assert result.returncode != 0
    assert "RestLimiterNotShared" in result.stdout + result.stderr


def test_the_required_alerts_exist() -> None:
    rules = {r["alert"]: r for g in load(PROMETHEUS / "alerts.yml")["groups"] for r in g["rules"]}
    wanted = {
        "ShardDisconnected": "shardline_gateway_shard_connected",
        "EventAgeHigh": "shardline_worker_event_age_seconds_bucket",
        "DeadLettersGrowing": "shardline_worker_dead_letter_messages",
        "DiscordRateLimited": "shardline_worker_rest_rate_limited_total",
        "SessionStartBudgetLow": "shardline_gateway_session_start_remaining",
        "RestLimiterNotShared": "shardline_worker_rest_limiter_shared",
        "GatewayRedisDown": "shardline_gateway_redis_up",
        "TargetDown": "up",
    }
    for alert, metric in wanted.items():
        assert metric in exported.metric_names(rules[alert]["expr"]), alert
    assert rules["ShardDisconnected"]["for"] == "1m"
    for alert, rule in rules.items():
        unknown = exported.metric_names(rule["expr"]) - exported.KNOWN
        assert not unknown, f"{alert} reads {sorted(unknown)}, which nothing exports"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_the_stack_scrapes_every_task_of_every_gateway_and_worker_service() -> None:
    stack = load(exported.ROOT / "stack.yml")
    config = load(PROMETHEUS / CONFIGS["stack.yml"])
    apps = long_running_apps(stack)
    assert set(apps) >= {
        "gateway-main",
        "gateway-premium",
        "worker",
        "worker-premium",
        "services-main",
    }
    for service, role in apps.items():
        # tasks.<service>: one address per task; <service> alone is one virtual IP.
        assert f"tasks.{service}" in dns_names(config, role), service
    every_name = {
        n
        for s in config["scrape_configs"]
        for sd in s.get("dns_sd_configs", [])
        for n in sd["names"]
    }
    assert all(name.startswith("tasks.") for name in every_name), sorted(every_name)
    assert dns_names(config, "rabbitmq") == {"tasks.rabbitmq"}


def test_compose_scrapes_its_services_by_name() -> None:
    """Compose's DNS answers a service's name with every container, so names are enough."""
    compose = load(exported.ROOT / "docker-compose.yml")
    config = load(PROMETHEUS / CONFIGS["docker-compose.yml"])
    apps = long_running_apps(compose)
    assert set(apps) == {"gateway", "worker"}  # worker-sync is a one-shot: nothing to scrape
    for service, role in apps.items():
        assert dns_names(config, role) == {service}
    assert dns_names(config, "rabbitmq") == {"rabbitmq"}


@pytest.mark.parametrize("name", sorted(CONFIGS.values()))
def test_rabbitmq_is_scraped_in_total_and_per_queue(name: str) -> None:
    jobs = {s["job_name"]: s for s in load(PROMETHEUS / name)["scrape_configs"]}
    for job in ("rabbitmq", "rabbitmq-queues"):
        assert {sd["port"] for sd in jobs[job]["dns_sd_configs"]} == {15692}
    assert jobs["rabbitmq"].get("metrics_path", "/metrics") == "/metrics"
    queues = jobs["rabbitmq-queues"]
    assert queues["metrics_path"] == "/metrics/detailed"
    assert set(queues["params"]["family"]) == {"queue_coarse_metrics", "queue_consumer_count"}
    for job in ("gateway", "worker"):
        assert {sd["port"] for sd in jobs[job]["dns_sd_configs"]} == {8080}  # HEALTH_PORT


@pytest.mark.parametrize("compose_file", sorted(CONFIGS))
def test_prometheus_gets_the_config_and_the_rules_it_names(compose_file: str) -> None:
    document = load(exported.ROOT / compose_file)
    prometheus = document["services"]["prometheus"]
    if compose_file == "stack.yml":
        mounted = {
            c["target"]: document["configs"][c["source"]]["file"] for c in prometheus["configs"]
        }
    else:
        mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    expected = f"./deploy/prometheus/{CONFIGS[compose_file]}"
    assert mounted["/etc/prometheus/prometheus.yml"] == expected
    # rule_files are relative to the config's directory.
    assert mounted["/etc/prometheus/alerts.yml"] == "./deploy/prometheus/alerts.yml"
    rule_files = load(PROMETHEUS / CONFIGS[compose_file])["rule_files"]
    assert rule_files == ["alerts.yml"]
