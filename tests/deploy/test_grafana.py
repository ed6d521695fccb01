"""deploy/grafana: the provisioned dashboard queries what the processes export, in valid PromQL."""

from __future__ import annotations

import json
import re
import typing

import yaml

from tests.deploy import exported

if typing.TYPE_CHECKING:
    import pathlib

GRAFANA: typing.Final = exported.DEPLOY / "grafana"
DASHBOARD: typing.Final = GRAFANA / "dashboards" / "shardline.json"
#: Grafana's variables, as Grafana would fill them in.
VARIABLES: typing.Final = {"$__rate_interval": "1m", "$__range": "1h", "$pool": ".*"}


def panels() -> list[dict[str, typing.Any]]:
    found = json.loads(DASHBOARD.read_text())["panels"]
    return [panel for panel in found if panel["type"] != "row"]


def expressions() -> list[tuple[str, str, str]]:
    """(panel title, expression, legend) of every query."""
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in panels()
        for target in panel["targets"]
    ]


def filled(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def test_every_query_is_valid_promql(tmp_path: pathlib.Path) -> None:
    """promtool parses each query as a recording rule (it has no bare expression check)."""
    rules = [
        {"record": f"dashboard:query_{number}", "expr": filled(expr)}
        for number, (_, expr, _) in enumerate(expressions())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = exported.promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_refuses_a_broken_query(tmp_path: pathlib.Path) -> None:
    """The check above can fail: a query with an unclosed parenthesis is refused."""
    path = tmp_path / "broken.rules.yml"
    rule = {"record": "dashboard:broken", "expr": "sum by (pool) (rate(up[1m])"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "broken", "rules": [rule]}]}))
    assert exported.promtool("check", "rules", path).returncode != 0


def test_every_query_reads_only_exported_metrics() -> None:
    for title, expr, _ in expressions():
        unknown = exported.metric_names(expr) - exported.KNOWN
        assert not unknown, f"panel {title!r} reads {sorted(unknown)}, which nothing exports"


def test_every_exported_metric_has_a_panel() -> None:
    shown = set().union(*(exported.metric_names(expr) for _, expr, _ in expressions()))
    histogram_parts = {name for name in exported.WORKER if name.endswith(("_sum", "_count"))}
    wanted = (exported.GATEWAY | exported.WORKER | exported.PROCESS) - histogram_parts
    missing = wanted - {"python_info"} - shown
    assert not missing, f"no panel shows {sorted(missing)}"
    assert {"rabbitmq_detailed_queue_messages_ready", "up"} <= shown


def test_legends_name_only_labels_the_query_keeps() -> None:
    """`sum by (pool)` has no `instance`: a legend of {{instance}} would be empty."""
    for title, expr, legend in expressions():
        kept = re.search(r"\bby \(([^)]*)\)", expr)
        if kept is None:
            continue
        labels = {label.strip() for label in kept.group(1).split(",")}
        used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        assert used <= labels, f"panel {title!r}: legend {legend!r} names what {expr} drops"


def test_the_layout_is_a_grid_without_overlaps() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "pool"}


def test_the_dashboard_is_provisioned_where_compose_and_the_stack_put_it() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "shardline.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((exported.ROOT / "docker-compose.yml").read_text())
    assert f"./deploy/grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]
    stack = yaml.safe_load((exported.ROOT / "stack.yml").read_text())
    targets = {
        stack["configs"][c["source"]]["file"]: c["target"]
        for c in stack["services"]["grafana"]["configs"]
    }
    assert targets["./deploy/grafana/dashboards/shardline.json"] == f"{path}/shardline.json"
