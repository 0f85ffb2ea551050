"""Dashboards as code: the committed JSON is what bgdb/dashboards.py generates, every file meets
dashboards/dashboard.schema.json, and every query selects the dashboard's variables."""

from __future__ import annotations

import json

import jsonschema
import pytest

from bgdb import dashboards, promql

SCHEMA = json.loads((dashboards.OUT / "dashboard.schema.json").read_text())
FILES = sorted(dashboards.DASHBOARDS)


def test_committed_dashboards_are_generated() -> None:
    assert dashboards.main(["--check"]) == 0, "run python -m bgdb.dashboards"


@pytest.mark.parametrize("name", FILES)
def test_dashboard_meets_the_schema(name: str) -> None:
    jsonschema.validate(json.loads((dashboards.OUT / name).read_text()), SCHEMA)


def test_schema_refuses_a_panel_without_a_query() -> None:
    bad = json.loads(dashboards.render(dashboards.DASHBOARDS["bgdb-agents.json"]))
    bad["panels"][0]["targets"] = []
    with pytest.raises(jsonschema.ValidationError, match="should be non-empty"):
        jsonschema.validate(bad, SCHEMA)


def test_panel_ids_unique_and_every_query_has_the_instance_variable() -> None:
    for name, dash in dashboards.DASHBOARDS.items():
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in dash["panels"]:
            for t in panel["targets"]:
                if t["expr"].startswith("node_"):
                    continue  # the node exporter's hosts are not bgdb instances
                assert "$instance" in t["expr"], (name, panel["title"], t["expr"])


def test_drill_down_has_an_agent_variable_used_by_every_panel() -> None:
    dash = dashboards.DASHBOARDS["bgdb-agent.json"]
    assert "agent" in [v["name"] for v in dash["templating"]["list"]]
    assert all("$agent" in t["expr"] for p in dash["panels"] for t in p["targets"])


def test_provisioning_points_at_the_dashboards() -> None:
    prov = dashboards.OUT / "provisioning"
    assert "type: prometheus" in (prov / "datasource.yml").read_text()
    assert "type: file" in (prov / "dashboards.yml").read_text()


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (state) (bgdb_agents{instance=~"$instance"})', {"bgdb_agents"}),
    ("rate(a_total[5m]) / on (instance, job) group_left () (b > 0)", {"a_total", "b"}),
    ('histogram_quantile(0.95, sum by (le) (rate(x_bucket{le="1"}[5m])))', {"x_bucket"}),
    ("absent(up{job=\"bgdb\"}) or bgdb:rec:rate5m > bool 2 and y offset 5m", {
        "up", "bgdb:rec:rate5m", "y"}),
    ("time() - 1e3 * z", {"z"}),
])
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert promql.metric_names(expr) == names


def test_every_rule_and_dashboard_query_reads_some_metric() -> None:
    exprs = list(promql.rule_exprs().values()) + [q[3] for q in promql.dashboard_queries()]
    assert len(exprs) > 40
    assert all(promql.metric_names(e) for e in exprs)


def test_dashboard_files_are_found() -> None:
    assert [p.name for p in promql.DASHBOARDS] == FILES
