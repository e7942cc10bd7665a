"""The metric catalogue of spec §11.2-§11.3 for the plugins clusterdns has, plus its own extras.

Transcribed from the spec (CoreDNS 1.14's names, types, label names and buckets). The tests
compare a real scrape (tests/metrics/scrape.py) and docs/metrics.md against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DURATION: Final = tuple(0.00025 * 2**n for n in range(16))
SIZE: Final = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000, 64000)
PROGRAMMING: Final = tuple(0.001 * 2**n for n in range(20))
HEALTH: Final = (0.00025, 0.0025, 0.025, 0.25, 2.5)
CLIENT_GO: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

SZV: Final = ("server", "zone", "view")
CACHE: Final = ("server", "zones", "view")
CACHE_TYPED: Final = ("server", "type", "zones", "view")
TEMPLATE: Final = ("server", "zone", "view", "class", "type")


@dataclass(frozen=True)
class Spec:
    """One family we export."""

    name: str
    type: str
    """`counter`, `gauge` or `histogram`."""
    labels: tuple[str, ...]
    plugin: str
    """The plugin that exports it (`core` for the server, `process` for process metrics)."""
    buckets: tuple[float, ...] = ()
    coredns: bool = True
    """False for clusterdns's own families (docs/metrics.md lists them separately)."""


CATALOGUE: Final[tuple[Spec, ...]] = (
    # §11.2 core
    Spec("coredns_build_info", "gauge", ("version", "revision", "goversion"), "core"),
    Spec("coredns_panics_total", "counter", (), "core"),
    Spec("coredns_dns_requests_total", "counter", (*SZV, "proto", "family", "type"), "prometheus"),
    Spec("coredns_dns_request_duration_seconds", "histogram", SZV, "prometheus", DURATION),
    Spec("coredns_dns_request_size_bytes", "histogram", (*SZV, "proto"), "prometheus", SIZE),
    Spec("coredns_dns_do_requests_total", "counter", SZV, "prometheus"),
    Spec("coredns_dns_response_size_bytes", "histogram", (*SZV, "proto"), "prometheus", SIZE),
    Spec("coredns_dns_responses_total", "counter", (*SZV, "rcode", "plugin"), "prometheus"),
    Spec("coredns_plugin_enabled", "gauge", (*SZV, "name"), "core"),
    # §11.3 kubernetes
    Spec(
        "coredns_kubernetes_dns_programming_duration_seconds",
        "histogram",
        ("service_kind",),
        "kubernetes",
        PROGRAMMING,
    ),
    Spec(
        "coredns_kubernetes_rest_client_request_duration_seconds",
        "histogram",
        ("verb", "host"),
        "kubernetes",
        CLIENT_GO,
    ),
    Spec(
        "coredns_kubernetes_rest_client_rate_limiter_duration_seconds",
        "histogram",
        ("verb", "host"),
        "kubernetes",
        CLIENT_GO,
    ),
    Spec(
        "coredns_kubernetes_rest_client_requests_total",
        "counter",
        ("code", "method", "host"),
        "kubernetes",
    ),
    # forward / proxy
    Spec("coredns_forward_healthcheck_broken_total", "counter", (), "forward"),
    Spec("coredns_forward_max_concurrent_rejects_total", "counter", (), "forward"),
    Spec(
        "coredns_proxy_request_duration_seconds",
        "histogram",
        ("proxy_name", "to", "rcode"),
        "forward",
        DURATION,
    ),
    Spec("coredns_proxy_healthcheck_failures_total", "counter", ("proxy_name", "to"), "forward"),
    Spec(
        "coredns_proxy_conn_cache_hits_total", "counter", ("proxy_name", "to", "proto"), "forward"
    ),
    Spec(
        "coredns_proxy_conn_cache_misses_total",
        "counter",
        ("proxy_name", "to", "proto"),
        "forward",
    ),
    # cache
    Spec("coredns_cache_entries", "gauge", CACHE_TYPED, "cache"),
    Spec("coredns_cache_requests_total", "counter", CACHE, "cache"),
    Spec("coredns_cache_hits_total", "counter", CACHE_TYPED, "cache"),
    Spec("coredns_cache_misses_total", "counter", CACHE, "cache"),
    Spec("coredns_cache_prefetch_total", "counter", CACHE, "cache"),
    Spec("coredns_cache_drops_total", "counter", CACHE, "cache"),
    Spec("coredns_cache_served_stale_total", "counter", CACHE, "cache"),
    Spec("coredns_cache_evictions_total", "counter", CACHE_TYPED, "cache"),
    # health
    Spec("coredns_health_request_duration_seconds", "histogram", (), "health", HEALTH),
    Spec("coredns_health_request_failures_total", "counter", (), "health"),
    # reload (spec §14; exported by the reload plugin)
    Spec("coredns_reload_failed_total", "counter", (), "reload"),
    Spec("coredns_reload_version_info", "gauge", ("hash", "value"), "reload"),
    # hosts
    Spec("coredns_hosts_entries", "gauge", ("hostsfile",), "hosts"),
    Spec("coredns_hosts_reload_timestamp_seconds", "gauge", (), "hosts"),
    # template
    Spec("coredns_template_matches_total", "counter", TEMPLATE, "template"),
    Spec(
        "coredns_template_template_failures_total",
        "counter",
        (*TEMPLATE, "section", "template"),
        "template",
    ),
    Spec(
        "coredns_template_rr_failures_total",
        "counter",
        (*TEMPLATE, "section", "template"),
        "template",
    ),
    # acl (spec §11.3; `allowed` has no zone label)
    Spec("coredns_acl_blocked_requests_total", "counter", SZV, "acl"),
    Spec("coredns_acl_filtered_requests_total", "counter", SZV, "acl"),
    Spec("coredns_acl_allowed_requests_total", "counter", ("server", "view"), "acl"),
    Spec("coredns_acl_dropped_requests_total", "counter", SZV, "acl"),
    # rrl (the external coredns/rrl plugin's names; labels differ, docs/deviations.md)
    Spec("coredns_rrl_responses_exceeded_total", "counter", SZV, "rrl"),
    Spec("coredns_rrl_requests_exceeded_total", "counter", SZV, "rrl"),
    # process metrics the spec asks for (§11.3, "Process metrics")
    Spec("process_cpu_seconds_total", "counter", (), "process", coredns=False),
    Spec("process_resident_memory_bytes", "gauge", (), "process", coredns=False),
    Spec("process_open_fds", "gauge", (), "process", coredns=False),
    Spec("process_max_fds", "gauge", (), "process", coredns=False),
    Spec("process_start_time_seconds", "gauge", (), "process", coredns=False),
    Spec("process_virtual_memory_bytes", "gauge", (), "process", coredns=False),
    # clusterdns's own (docs/deviations.md D10, D25, D27 and the kubernetes plugin)
    Spec("clusterdns_dns_dropped_requests_total", "counter", ("reason",), "core", coredns=False),
    Spec("clusterdns_dns_rejected_requests_total", "counter", ("rcode",), "core", coredns=False),
    Spec("clusterdns_fastpath_hits_total", "counter", (), "core", coredns=False),
    Spec(
        "clusterdns_forward_discarded_replies_total",
        "counter",
        ("to", "reason"),
        "forward",
        coredns=False,
    ),
    Spec("clusterdns_forward_merged_requests_total", "counter", (), "forward", coredns=False),
    Spec("clusterdns_forward_pending_rejects_total", "counter", (), "forward", coredns=False),
    Spec(
        "clusterdns_kubernetes_events_total",
        "counter",
        ("resource", "type"),
        "kubernetes",
        coredns=False,
    ),
    Spec("clusterdns_kubernetes_api_connected", "gauge", (), "kubernetes", coredns=False),
    Spec("clusterdns_loop_detected", "gauge", ("zone", "upstream"), "loop", coredns=False),
)

BY_NAME: Final = {spec.name: spec for spec in CATALOGUE}

ABSENT_UNTIL_EVENT: Final = frozenset({"coredns_reload_version_info"})
"""Families that are not even declared until something happens (spec §11.3: set only when the
reload plugin detects a change)."""

LABEL_NAMES: Final = frozenset(label for spec in CATALOGUE for label in spec.labels)
"""Every label name we use. None of them carries a query name or a client address."""
