"""The cache's series (spec §11.3): one set per process Metrics, shared by every `cache` line.

Plain-integer families from `clusterdns.metrics`, registered on first use; names, help texts and
labels are CoreDNS's. `zones` is the cache's zones joined with `,`; `view` is always empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from clusterdns.metrics import NAMESPACE, Counter, Gauge, Metrics

_BASE: Final = ("server", "zones", "view")
_TYPED: Final = ("server", "type", "zones", "view")


@dataclass(frozen=True, slots=True)
class CacheMetrics:
    """The cache series of one process registry."""

    entries: Gauge
    requests: Counter
    hits: Counter
    misses: Counter
    prefetch: Counter
    drops: Counter
    served_stale: Counter
    evictions: Counter


def _make_metrics(metrics: Metrics) -> CacheMetrics:
    """Build and register the series (once per process, through `Metrics.shared`)."""
    prefix = f"{NAMESPACE}_cache"
    found = CacheMetrics(
        entries=Gauge(f"{prefix}_entries", "The number of elements in the cache.", _TYPED),
        requests=Counter(f"{prefix}_requests_total", "The count of cache requests.", _BASE),
        hits=Counter(f"{prefix}_hits_total", "The count of cache hits.", _TYPED),
        misses=Counter(
            f"{prefix}_misses_total",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests "
            "counters.",
            _BASE,
        ),
        prefetch=Counter(
            f"{prefix}_prefetch_total",
            "The number of times the cache has prefetched a cached item.",
            _BASE,
        ),
        drops=Counter(
            f"{prefix}_drops_total",
            "The number responses that are not cached, because the reply is malformed.",
            _BASE,
        ),
        served_stale=Counter(
            f"{prefix}_served_stale_total",
            "The number of requests served from stale cache entries.",
            _BASE,
        ),
        evictions=Counter(f"{prefix}_evictions_total", "The count of cache evictions.", _TYPED),
    )
    metrics.register(
        found.entries,
        found.requests,
        found.hits,
        found.misses,
        found.prefetch,
        found.drops,
        found.served_stale,
        found.evictions,
    )
    return found


def metrics_for(metrics: Metrics) -> CacheMetrics:
    """Return the cache series of `metrics`, registering them on first use."""
    return metrics.shared("cache", _make_metrics)
