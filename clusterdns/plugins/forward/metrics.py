"""The forward plugin's series and its process-wide limits, one set per Metrics object.

Every `forward` line of every block shares them: the families are registered once per Metrics
(get-or-create keyed by the Metrics instance), as CoreDNS's package-level collectors are. The
pending-query budget lives here too, because it bounds sockets for the whole process. Plain
integers only; nothing here does I/O.
"""

from __future__ import annotations

import resource
import weakref
from dataclasses import dataclass
from typing import Final

from clusterdns.metrics import DURATION_BUCKETS, NAMESPACE, Counter, Histogram, Metrics

PROXY_NAME: Final = "forward"
"""The `proxy_name` label value of the `coredns_proxy_*` series."""
MAX_PENDING_CAP: Final = 10_000
MIN_PENDING_CAP: Final = 64


@dataclass(frozen=True, slots=True)
class ForwardMetrics:
    """The forward and proxy series (spec §11.3) plus clusterdns's own forward counters."""

    healthcheck_broken: Counter
    """`coredns_forward_healthcheck_broken_total`: times every upstream was down."""
    max_concurrent_rejects: Counter
    """`coredns_forward_max_concurrent_rejects_total`: queries refused by `max_concurrent`."""
    request_duration: Histogram
    """`coredns_proxy_request_duration_seconds{proxy_name,to,rcode}`: upstream round trips."""
    healthcheck_failures: Counter
    """`coredns_proxy_healthcheck_failures_total{proxy_name,to}`: failed health probes."""
    conn_cache_hits: Counter
    """`coredns_proxy_conn_cache_hits_total{proxy_name,to,proto}`: reused connections."""
    conn_cache_misses: Counter
    """`coredns_proxy_conn_cache_misses_total{proxy_name,to,proto}`: new connections."""
    discarded_replies: Counter
    """`clusterdns_forward_discarded_replies_total{to,reason}`: replies that failed the RFC 5452
    checks (wrong ID, question or source, malformed) and were ignored."""
    merged_requests: Counter
    """`clusterdns_forward_merged_requests_total`: queries answered by joining an identical
    query already in flight upstream."""
    pending_rejects: Counter
    """`clusterdns_forward_pending_rejects_total`: queries refused because the process-wide
    number of pending upstream queries was at its cap."""


class PendingBudget:
    """A process-wide cap on upstream queries in flight (each holds a socket). Loop-thread only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """The most upstream queries allowed in flight at once."""
        self.pending = 0

    def try_acquire(self) -> bool:
        """Take one slot; False when the cap is reached."""
        if self.pending >= self.limit:
            return False
        self.pending += 1
        return True

    def release(self) -> None:
        """Give a slot back."""
        self.pending -= 1


@dataclass(frozen=True, slots=True)
class Shared:
    """What every forward line of one process shares."""

    metrics: ForwardMetrics
    pending: PendingBudget


_SHARED: weakref.WeakKeyDictionary[Metrics, Shared] = weakref.WeakKeyDictionary()


def default_pending_limit() -> int:
    """Half the open-file limit, between 64 and 10,000: sockets for the listeners stay free."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return MAX_PENDING_CAP
    if soft == resource.RLIM_INFINITY:
        return MAX_PENDING_CAP
    return max(MIN_PENDING_CAP, min(MAX_PENDING_CAP, soft // 2))


def shared_for(metrics: Metrics) -> Shared:
    """Return the forward series and budget of `metrics`, registering the series on first use."""
    found = _SHARED.get(metrics)
    if found is not None:
        return found
    labels = ("proxy_name", "to")
    series = ForwardMetrics(
        healthcheck_broken=Counter(
            f"{NAMESPACE}_forward_healthcheck_broken_total",
            "Counter of the number of complete failures of the healthchecks.",
        ),
        max_concurrent_rejects=Counter(
            f"{NAMESPACE}_forward_max_concurrent_rejects_total",
            "Counter of the number of queries rejected because the concurrent queries were at "
            "maximum.",
        ),
        request_duration=Histogram(
            f"{NAMESPACE}_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            (*labels, "rcode"),
            DURATION_BUCKETS,
        ),
        healthcheck_failures=Counter(
            f"{NAMESPACE}_proxy_healthcheck_failures_total",
            "Counter of the number of failed healthchecks.",
            labels,
        ),
        conn_cache_hits=Counter(
            f"{NAMESPACE}_proxy_conn_cache_hits_total",
            "Counter of connection cache hits per upstream and protocol.",
            (*labels, "proto"),
        ),
        conn_cache_misses=Counter(
            f"{NAMESPACE}_proxy_conn_cache_misses_total",
            "Counter of connection cache misses per upstream and protocol.",
            (*labels, "proto"),
        ),
        discarded_replies=Counter(
            "clusterdns_forward_discarded_replies_total",
            "Upstream replies ignored because their ID, question or source did not match.",
            ("to", "reason"),
        ),
        merged_requests=Counter(
            "clusterdns_forward_merged_requests_total",
            "Queries answered by an identical upstream query already in flight.",
        ),
        pending_rejects=Counter(
            "clusterdns_forward_pending_rejects_total",
            "Queries refused because too many upstream queries were pending.",
        ),
    )
    for unlabelled in (
        series.healthcheck_broken,
        series.max_concurrent_rejects,
        series.merged_requests,
        series.pending_rejects,
    ):
        unlabelled.inc((), 0)  # exported as 0 from the start, as CoreDNS does
    metrics.register(
        series.healthcheck_broken,
        series.max_concurrent_rejects,
        series.request_duration,
        series.healthcheck_failures,
        series.conn_cache_hits,
        series.conn_cache_misses,
        series.discarded_replies,
        series.merged_requests,
        series.pending_rejects,
    )
    found = Shared(series, PendingBudget(default_pending_limit()))
    _SHARED[metrics] = found
    return found
