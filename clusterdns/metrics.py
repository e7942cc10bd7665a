"""Process-wide metrics: one prometheus-client registry, cheap counters for the query path.

On the query path a prometheus-client `labels().inc()` costs about 1 µs, so core series are
plain dictionaries of integers keyed by label tuples, published by a custom collector at scrape
time. Plugins with low-rate series (reload, health, forward health checks) may register ordinary
prometheus-client metrics on `Metrics.registry`. Names, labels and buckets are CoreDNS 1.14's.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, TypeVar, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from clusterdns import __version__

NAMESPACE: Final = "coredns"
DURATION_BUCKETS: Final = tuple(0.00025 * 2**n for n in range(16))
SIZE_BUCKETS: Final = (
    0,
    100,
    200,
    300,
    400,
    511,
    1023,
    2047,
    4095,
    8291,
    16000,
    32000,
    48000,
    64000,
)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

LabelKey = tuple[str, ...]
T = TypeVar("T")


class Counter:
    """A counter family of plain integers. Loop-thread only."""

    __slots__ = ("doc", "labelnames", "name", "values")

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self.values: dict[LabelKey, float] = {}

    def inc(self, key: LabelKey = (), amount: float = 1) -> None:
        """Add `amount` to the series with these label values."""
        self.values[key] = self.values.get(key, 0) + amount

    def get(self, key: LabelKey = ()) -> float:
        """Current value of a series (0 if never incremented)."""
        return self.values.get(key, 0)

    def collect(self) -> Metric:
        """The family as prometheus-client publishes it."""
        base = self.name[:-6] if self.name.endswith("_total") else self.name
        fam = CounterMetricFamily(base, self.doc, labels=self.labelnames)
        for key, value in self.values.items():
            fam.add_metric(list(key), value)
        return fam


class Gauge(Counter):
    """A gauge family of plain numbers. Loop-thread only."""

    __slots__ = ()

    def set(self, key: LabelKey, value: float) -> None:
        """Set a series."""
        self.values[key] = value

    def remove(self, key: LabelKey) -> None:
        """Drop a series."""
        self.values.pop(key, None)

    def collect(self) -> Metric:
        """The family as prometheus-client publishes it."""
        fam = GaugeMetricFamily(self.name, self.doc, labels=self.labelnames)
        for key, value in self.values.items():
            fam.add_metric(list(key), value)
        return fam


class Histogram:
    """A histogram family of plain bucket counts. Loop-thread only."""

    __slots__ = ("bounds", "counts", "doc", "labelnames", "name", "sums")

    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in bounds)
        self.counts: dict[LabelKey, list[int]] = {}
        self.sums: dict[LabelKey, float] = {}

    def observe(self, key: LabelKey, value: float) -> None:
        """Record one observation."""
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * (len(self.bounds) + 1)
            self.sums[key] = 0.0
        counts[bisect_left(self.bounds, value)] += 1
        self.sums[key] += value

    def count(self, key: LabelKey) -> int:
        """Number of observations of a series."""
        return sum(self.counts.get(key, ()))

    def collect(self) -> Metric:
        """The family as prometheus-client publishes it (cumulative buckets)."""
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for key, counts in self.counts.items():
            running = 0
            buckets: list[tuple[str, float]] = []
            for bound, c in zip(self.bounds, counts, strict=False):
                running += c
                buckets.append((_le(bound), running))
            running += counts[-1]
            buckets.append(("+Inf", running))
            fam.add_metric(list(key), buckets, self.sums[key])
        return fam


def _le(bound: float) -> str:
    text = repr(float(bound))
    return text[:-2] if text.endswith(".0") and "e" not in text else text


class _Families(Collector):
    def __init__(self, families: Iterable[Counter | Histogram]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        for fam in self.families:
            yield fam.collect()


class Metrics:
    """The process-wide registry and the core DNS series (spec §11.2)."""

    def __init__(self, revision: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._shared: dict[str, object] = {}
        srv_zone_view = ("server", "zone", "view")
        self.build_info = Gauge(
            f"{NAMESPACE}_build_info",
            "A metric with a constant '1' value "
            "labeled by version, revision, and goversion from which CoreDNS was built.",
            ("version", "revision", "goversion"),
        )
        self.build_info.set((__version__, revision, f"python{platform.python_version()}"), 1)
        self.panics = Counter(
            f"{NAMESPACE}_panics_total", "A metrics that counts the number of panics."
        )
        self.panics.inc((), 0)  # exported as 0 from start-up, as CoreDNS does
        self.requests = Counter(
            f"{NAMESPACE}_dns_requests_total",
            "Counter of DNS requests made per zone, protocol and family.",
            (*srv_zone_view, "proto", "family", "type"),
        )
        self.duration = Histogram(
            f"{NAMESPACE}_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took.",
            srv_zone_view,
            DURATION_BUCKETS,
        )
        self.request_size = Histogram(
            f"{NAMESPACE}_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP).",
            (*srv_zone_view, "proto"),
            SIZE_BUCKETS,
        )
        self.do_requests = Counter(
            f"{NAMESPACE}_dns_do_requests_total",
            "Counter of DNS requests with DO bit set per zone.",
            srv_zone_view,
        )
        self.response_size = Histogram(
            f"{NAMESPACE}_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            (*srv_zone_view, "proto"),
            SIZE_BUCKETS,
        )
        self.responses = Counter(
            f"{NAMESPACE}_dns_responses_total",
            "Counter of response status codes.",
            (*srv_zone_view, "rcode", "plugin"),
        )
        self.plugin_enabled = Gauge(
            f"{NAMESPACE}_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            (*srv_zone_view, "name"),
        )
        self.dropped = Counter(
            "clusterdns_dns_dropped_requests_total",
            "Packets dropped before the plugin chain, by reason.",
            ("reason",),
        )
        self.rejected = Counter(
            "clusterdns_dns_rejected_requests_total",
            "Packets answered from the header alone (FORMERR, NOTIMP, BADVERS).",
            ("rcode",),
        )
        self.fastpath_hits = Counter(
            "clusterdns_fastpath_hits_total", "Queries answered from prepared wire replies."
        )
        self._core = _Families(
            [
                self.build_info,
                self.panics,
                self.requests,
                self.duration,
                self.request_size,
                self.do_requests,
                self.response_size,
                self.responses,
                self.plugin_enabled,
                self.dropped,
                self.rejected,
                self.fastpath_hits,
            ]
        )
        self.registry.register(self._core)
        self.registry.register(ProcessCollector(registry=None))

    def register(self, *families: Counter | Histogram) -> None:
        """Publish further plain-integer families (a plugin's own series)."""
        self.registry.register(_Families(families))

    def shared(self, key: str, make: Callable[[Metrics], T]) -> T:
        """Get or create a plugin's metrics, once per process.

        `make` builds and registers them the first time; every later caller (another block,
        another line, a reloaded configuration) gets the same object, so no family is
        published twice.
        """
        if key not in self._shared:
            self._shared[key] = make(self)
        return cast(T, self._shared[key])

    def exposition(self) -> bytes:
        """The text exposition of every registered series."""
        return generate_latest(self.registry)
