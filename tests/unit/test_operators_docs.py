"""The dashboard names only metrics the service exports, in PromQL that parses; every alert
links to a runbook section that exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser

from lifecycled.observe import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "lifecycled" / "dashboards" / "lifecycled.json"
RULES = ROOT / "helm" / "lifecycled" / "templates" / "prometheusrule.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
WANTED_PANELS = (
    "lifecycled_notices_total",
    "lifecycled_drains_in_progress",
    "lifecycled_notice_to_cordon_seconds_bucket",
    "lifecycled_drain_duration_seconds_bucket",
    "lifecycled_evictions_total",
    "lifecycled_forced_terminations_total",
    "lifecycled_deadlines_missed_total",
    "lifecycled_lifecycle_actions_total",
    "lifecycled_lb_wait_seconds_bucket",
    "lifecycled_sqs_messages_total",
    "lifecycled_api_requests_total",
    "lifecycled_imds_polls_total",
    "lifecycled_leader",
    "lifecycled_drain_info",
)


def exported() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ("",))
        names |= {family.name + s for s in suffixes}
    return names


def selectors(expr: Any) -> set[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)

    promql_parser.walk(expr, visit)
    return found


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_every_dashboard_expression_parses_and_names_exported_metrics() -> None:
    known = exported()
    used: set[str] = set()
    for expr in expressions():
        names = selectors(promql_parser.parse(expr.replace("$job", "x")))
        assert names, expr
        assert names <= known, (expr, names - known)
        used |= names
    assert set(WANTED_PANELS) <= used, set(WANTED_PANELS) - used


def test_the_checker_would_catch_an_unknown_metric() -> None:
    expr = promql_parser.parse('rate(lifecycled_no_such_thing_total{job="x"}[5m])')
    assert not selectors(expr) <= exported()


def anchors() -> set[str]:
    headings = re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_has_a_runbook_section() -> None:
    template = RULES.read_text()
    alerts = re.findall(r'"alert" "(\w+)"', template)
    assert len(alerts) >= 12
    missing = [a for a in alerts if a.lower() not in anchors()]
    assert not missing
    assert 'runbook_url: {{ printf "%s#%s" $rule.runbookBaseUrl (lower .alert)' in template
