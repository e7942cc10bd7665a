"""manifests/monitoring/: the Grafana dashboard and the PrometheusRule are well-formed, their
PromQL parses, and every metric they query is in a real scrape of the server (after real
queries through every plugin that exports metrics), with label matchers the metric really has.

The PrometheusRule is a custom resource, so there is no Kubernetes schema to validate it against
offline; it is checked field by field here against the Prometheus Operator's PrometheusRule
(monitoring.coreos.com/v1) and Prometheus's rule-file rules instead."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest

from tests.manifests.objects import DASHBOARD, RULES, Obj, documents
from tests.metrics.catalogue import BY_NAME
from tests.metrics.scrape import Scrape, collect

TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "container"})
"""Labels Prometheus attaches to every scraped series."""
SYNTHETIC = frozenset({"up"})
"""Series Prometheus makes itself for every target."""
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
SEVERITIES = frozenset({"critical", "warning", "info"})


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Scrape:
    return collect(tmp_path_factory.mktemp("monitoring"))


# -- PromQL ----------------------------------------------------------------------------------------
def selectors(expr: promql_parser.Expr) -> Iterator[promql_parser.VectorSelector]:
    """Every vector selector of a parsed expression."""
    if isinstance(expr, promql_parser.VectorSelector):
        yield expr
    elif isinstance(expr, promql_parser.MatrixSelector):
        yield expr.vector_selector
    elif isinstance(expr, promql_parser.BinaryExpr):
        yield from selectors(expr.lhs)
        yield from selectors(expr.rhs)
    elif isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            if isinstance(arg, promql_parser.Expr):
                yield from selectors(arg)
    elif isinstance(
        expr,
        promql_parser.AggregateExpr
        | promql_parser.ParenExpr
        | promql_parser.UnaryExpr
        | promql_parser.SubqueryExpr,
    ):
        yield from selectors(expr.expr)


def family_of(sample: str, scrape: Scrape) -> str | None:
    """The exported family a sample name belongs to (`x_bucket` -> `x`), or None."""
    if sample in scrape.families:
        return sample
    for suffix in ("_bucket", "_count", "_sum"):
        base = sample.removesuffix(suffix)
        if base != sample and base in scrape.families:
            return base
    return None


def check_query(expr: str, scrape: Scrape, where: str) -> set[str]:
    """Parse `expr` and check its selectors against the scrape; return the metric names."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    try:
        parsed = promql_parser.parse(expr)
    except Exception as exc:  # the binding raises a plain exception with the parse error
        raise AssertionError(f"{where}: {expr!r} does not parse: {exc}") from exc
    names: set[str] = set()
    for sel in selectors(parsed):
        assert sel.name, f"{where}: a selector without a metric name in {expr!r}"
        names.add(sel.name)
        if sel.name in SYNTHETIC:
            continue
        family = family_of(sel.name, scrape)
        assert family is not None, f"{where}: {sel.name} is not exported"
        allowed = set(BY_NAME[family].labels) | TARGET_LABELS
        if sel.name.endswith("_bucket"):
            allowed.add("le")
        for matcher in sel.matchers.matchers:
            assert matcher.name in allowed, f"{where}: {sel.name} has no label {matcher.name}"
    return names


# -- the dashboard ---------------------------------------------------------------------------------
def dashboard() -> Obj:
    found: Obj = json.loads(DASHBOARD.read_text())
    return found


def panels(dash: Obj) -> Iterator[Obj]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_is_well_formed() -> None:
    dash = dashboard()
    assert dash["uid"] == "clusterdns" and dash["title"]
    assert isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels(dash):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_dashboard_queries_only_exported_metrics(scrape: Scrape) -> None:
    dash = dashboard()
    used: set[str] = set()
    for panel in panels(dash):
        for target in panel.get("targets", []):
            used |= check_query(target["expr"], scrape, f"panel {panel['title']!r}")
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), *(\w+)\)", var["query"]["query"])
        assert m is not None, var["name"]
        used |= check_query(m.group(1), scrape, f"variable {var['name']}")
    # The panels cover the dashboards people use: requests, responses, latency, cache, forward.
    for name in (
        "coredns_dns_requests_total",
        "coredns_dns_responses_total",
        "coredns_dns_request_duration_seconds_bucket",
        "coredns_cache_hits_total",
        "coredns_proxy_request_duration_seconds_bucket",
        "coredns_kubernetes_dns_programming_duration_seconds_bucket",
        "process_resident_memory_bytes",
    ):
        assert name in used, name


# -- the PrometheusRule ----------------------------------------------------------------------------
def rules() -> Obj:
    (doc,) = documents(RULES)
    return doc


def all_rules() -> Iterator[tuple[str, Obj]]:
    for group in rules()["spec"]["groups"]:
        for rule in group["rules"]:
            yield group["name"], rule


def test_rule_resource_is_well_formed() -> None:
    doc = rules()
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "PrometheusRule"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == "kube-system"
    assert set(doc["spec"]) == {"groups"}
    groups = doc["spec"]["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        assert group["rules"]


def as_str_map(value: Any) -> dict[str, str]:
    assert isinstance(value, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return value


@pytest.mark.parametrize("rule", [r for _, r in all_rules()], ids=lambda r: str(r.get("alert")))
def test_alert_is_well_formed(rule: Obj) -> None:
    assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
    assert isinstance(rule["expr"], str)
    if "for" in rule:
        assert DURATION.match(rule["for"]), rule["for"]
    labels = as_str_map(rule["labels"])
    assert labels["severity"] in SEVERITIES
    annotations = as_str_map(rule["annotations"])
    assert {"summary", "description"} <= set(annotations)


def test_alerts_query_only_exported_metrics(scrape: Scrape) -> None:
    used: set[str] = set()
    for _, rule in all_rules():
        used |= check_query(rule["expr"], scrape, f"alert {rule['alert']}")
    alerts = {rule["alert"] for _, rule in all_rules()}
    # The usual CoreDNS alerts (coredns-mixin) are all there, plus panics.
    assert {
        "CoreDNSDown",
        "CoreDNSLatencyHigh",
        "CoreDNSErrorsHigh",
        "CoreDNSForwardLatencyHigh",
        "CoreDNSForwardErrorsHigh",
        "CoreDNSForwardHealthcheckFailureCount",
        "CoreDNSForwardHealthcheckBrokenCount",
        "CoreDNSPanics",
    } <= alerts
    assert "coredns_panics_total" in used


def test_alert_names_with_two_severities_share_the_expression_shape() -> None:
    seen: dict[tuple[str, str], int] = {}
    for _, rule in all_rules():
        key = (rule["alert"], rule["labels"]["severity"])
        seen[key] = seen.get(key, 0) + 1
    assert all(n == 1 for n in seen.values()), "an alert name repeats with the same severity"
