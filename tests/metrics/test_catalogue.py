"""Every metric of spec §11.2-§11.3 (for our plugins) is exported with CoreDNS 1.14's name, type,
labels and buckets, after real queries through a real server; nothing is labelled by query name
or client address; docs/metrics.md lists exactly what is exported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clusterdns.plugins import SETUP
from tests.metrics.catalogue import ABSENT_UNTIL_EVENT, BY_NAME, CATALOGUE, LABEL_NAMES, Spec
from tests.metrics.scrape import QUERIES, ROOT, Scrape, collect

DOC = ROOT / "docs" / "metrics.md"

MUST_HAVE_SAMPLES = frozenset(
    {
        "coredns_build_info",
        "coredns_dns_requests_total",
        "coredns_dns_request_duration_seconds",
        "coredns_dns_request_size_bytes",
        "coredns_dns_do_requests_total",
        "coredns_dns_response_size_bytes",
        "coredns_dns_responses_total",
        "coredns_plugin_enabled",
        "coredns_kubernetes_dns_programming_duration_seconds",
        "coredns_kubernetes_rest_client_request_duration_seconds",
        "coredns_kubernetes_rest_client_rate_limiter_duration_seconds",
        "coredns_kubernetes_rest_client_requests_total",
        "coredns_forward_healthcheck_broken_total",
        "coredns_forward_max_concurrent_rejects_total",
        "coredns_proxy_request_duration_seconds",
        "coredns_proxy_conn_cache_misses_total",
        "coredns_cache_entries",
        "coredns_cache_requests_total",
        "coredns_cache_hits_total",
        "coredns_cache_misses_total",
        "coredns_health_request_duration_seconds",
        "coredns_health_request_failures_total",
        "coredns_hosts_entries",
        "coredns_hosts_reload_timestamp_seconds",
        "coredns_template_matches_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "clusterdns_kubernetes_api_connected",
        "clusterdns_kubernetes_events_total",
    }
)
"""Families the queries of tests/metrics/scrape.py must give at least one sample, so their label
names and buckets are checked too (the others are declared, with HELP and TYPE, but stay empty
without a failure to count)."""


def expected() -> list[Spec]:
    """The catalogue entries of the plugins this build has (reload may not be there yet)."""
    have = {*SETUP, "core", "process", "prometheus"}
    return [s for s in CATALOGUE if s.plugin in have and s.name not in ABSENT_UNTIL_EVENT]


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Scrape:
    return collect(tmp_path_factory.mktemp("catalogue"))


@pytest.mark.parametrize("spec", expected(), ids=lambda s: s.name)
def test_family_is_exported_as_coredns_does(scrape: Scrape, spec: Spec) -> None:
    fam = scrape.families.get(spec.name)
    assert fam is not None, f"{spec.name} is not exported"
    assert fam.type == spec.type
    if spec.name in MUST_HAVE_SAMPLES:
        assert fam.samples, f"{spec.name} has no sample after the queries"
    if fam.samples:
        assert fam.labels == set(spec.labels), f"{spec.name}: labels {sorted(fam.labels)}"
        if spec.type == "histogram":
            assert fam.buckets == pytest.approx(tuple(float(b) for b in spec.buckets))


def test_panics_counter_starts_at_zero(scrape: Scrape) -> None:
    assert scrape.families["coredns_panics_total"].samples == (("coredns_panics_total", {}, 0.0),)


def test_queries_are_counted_by_the_plugin_that_answered(scrape: Scrape) -> None:
    for plugin in ("kubernetes", "forward", "cache", "hosts", "template"):
        assert scrape.value("coredns_dns_responses_total", plugin=plugin) > 0, plugin
    assert scrape.value("coredns_dns_requests_total", proto="tcp", type="SRV") == 1
    assert scrape.value("coredns_dns_do_requests_total") == 1
    assert scrape.value("coredns_cache_hits_total", type="success") >= 1
    # NXDOMAIN from upstream: nosuch.example, and the loop plugin's probe (HINFO, random name).
    assert scrape.value("coredns_proxy_request_duration_seconds_count", rcode="NXDOMAIN") >= 1


def test_api_client_series(scrape: Scrape) -> None:
    fam = scrape.families["coredns_kubernetes_rest_client_requests_total"]
    hosts = {labels["host"] for _, labels, _ in fam.samples}
    assert len(hosts) == 1 and re.fullmatch(r"127\.0\.0\.1:\d+", hosts.pop())
    assert {labels["method"] for _, labels, _ in fam.samples} == {"GET"}
    # Three lists (services, endpointslices, namespaces), then their watches.
    assert scrape.value("coredns_kubernetes_rest_client_requests_total", code="200") >= 6
    lists = scrape.value("coredns_kubernetes_rest_client_request_duration_seconds_count")
    assert lists >= 3
    limiter = "coredns_kubernetes_rest_client_rate_limiter_duration_seconds"
    assert scrape.value(f"{limiter}_count") == lists
    assert scrape.value(f"{limiter}_bucket", le="0.005") == lists  # no limiter: no wait
    assert scrape.value(f"{limiter}_sum") == 0


def test_programming_latency_from_the_trigger_time(scrape: Scrape) -> None:
    name = "coredns_kubernetes_dns_programming_duration_seconds"
    assert scrape.value(f"{name}_count", service_kind="cluster_ip") == 1
    assert 1.0 <= scrape.value(f"{name}_sum") < 30.0  # the trigger time was >= 1 s in the past


def test_no_label_carries_a_query_name_or_a_client_address(scrape: Scrape) -> None:
    names = {args[0].lower().rstrip(".") for args in QUERIES if not args[0].startswith("-")}
    for fam in scrape.families.values():
        assert fam.labels <= LABEL_NAMES, f"{fam.name}: unexpected labels {fam.labels}"
        for _, labels, _ in fam.samples:
            for key, value in labels.items():
                assert value.lower().rstrip(".") not in names, f"{fam.name}{{{key}={value!r}}}"
                # The server's own bind address appears in `server`; a client's port never.
                if key != "server":
                    assert not re.search(r"127\.0\.0\.1:\d+", value) or key in ("to", "host")


def test_nothing_outside_the_catalogue(scrape: Scrape) -> None:
    unknown = sorted(n for n in scrape.families if n not in BY_NAME)
    assert unknown == [], "exported but neither in the spec catalogue nor documented"


def documented() -> dict[str, str]:
    """docs/metrics.md: family name -> its type column."""
    out: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|\s*(counter|gauge|histogram)\b", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_docs_list_the_catalogue() -> None:
    docs = documented()
    for spec in CATALOGUE:
        assert docs.get(spec.name) == spec.type, f"docs/metrics.md: {spec.name}"
    assert set(docs) == set(BY_NAME), "docs/metrics.md documents a family the tests do not know"


def test_docs_exist_under_docs() -> None:
    assert Path(DOC).is_file()
