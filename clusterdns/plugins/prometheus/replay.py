"""Fast-path accounting for `prometheus`: what a replayed reply counts.

A reply the server replays from its prepared-reply table (chain/fastpath.py) never runs this
plugin, yet must be counted exactly as if it had: the plugin wraps the writer with an
`OfferHolder`, so a fast-path offer made by a later plugin waits until the reply has been
counted, then goes on to the server with a hit recorder attached (`Offer.with_hit`). The recorder
holds everything the plugin counted for that reply, resolved once — label tuples, the histogram
series and bucket of each size — so a replay is a handful of integer additions on the same
plain-integer families the custom collector publishes at scrape time:

- `coredns_dns_requests_total{server, zone, view, proto, family, type}` with the replaying
  client's family (the rest is fixed by the query bytes and the listener);
- `coredns_dns_do_requests_total` when the query has DO;
- `coredns_dns_request_size_bytes` and `coredns_dns_response_size_bytes` with the same sizes;
- `coredns_dns_responses_total{rcode, plugin}` with the same rcode and answering plugin;
- `coredns_dns_request_duration_seconds`: a constant `HIT_DURATION_S` (5 µs, the first bucket),
  the order of the server CPU a replay costs; it is not timed per replay.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

from clusterdns.chain.fastpath import HitHook, Offer
from clusterdns.chain.writer import ResponseWriter, WriterWrapper
from clusterdns.dnsutil.rcode import metric_type, rcode_name
from clusterdns.metrics import Histogram, LabelKey, Metrics

HIT_DURATION_S: Final = 0.000005
"""The request duration observed for a fast-path replay (the order of its server CPU time)."""


RecorderKey = tuple[str, str, str, int, bool, int, int, int, str]
"""(server, zone, proto, qtype, DO, request size, response size, rcode, plugin)."""

MAX_RECORDERS: Final = 4096
"""Recorders kept for reuse; past this the memo starts over (replies already stored keep theirs)."""


class Recorders:
    """Builds hit recorders, reusing the one built for the same labels and sizes."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._memo: dict[RecorderKey, HitHook] = {}

    def get(self, key: RecorderKey) -> HitHook:
        """The recorder for one kind of reply (built on first use)."""
        hook = self._memo.get(key)
        if hook is None:
            if len(self._memo) >= MAX_RECORDERS:
                self._memo.clear()
            hook = self._memo[key] = hit_recorder(self.metrics, *key)
        return hook


def hit_recorder(
    metrics: Metrics,
    server: str,
    zone: str,
    proto: str,
    qtype: int,
    do: bool,
    request_size: int,
    response_size: int,
    rcode: int,
    plugin: str,
) -> HitHook:
    """A hook counting one replay of a reply as this plugin counted it on the full chain.

    Everything is resolved here; the hook itself is a closure (cell variables are the cheapest
    state CPython reads) doing plain integer additions, about 0.3 µs per replay. Every series it
    adds to exists already (the full chain counted this reply), except the requests of the other
    client family; counters are never removed.
    """
    base: LabelKey = (server, zone, "")
    kind = metric_type(qtype)
    requests = metrics.requests.values
    v4: LabelKey = (*base, proto, "1", kind)
    v6: LabelKey = (*base, proto, "2", kind)
    do_requests = metrics.do_requests.values
    sized: LabelKey = (*base, proto)
    req_counts, req_sums, req_bucket = _series(metrics.request_size, sized, request_size)
    req_size = float(request_size)
    resp_counts, resp_sums, resp_bucket = _series(metrics.response_size, sized, response_size)
    resp_size = float(response_size)
    dur_counts, dur_sums, dur_bucket = _series(metrics.duration, base, HIT_DURATION_S)
    responses = metrics.responses.values
    answered: LabelKey = (*base, rcode_name(rcode), plugin)

    def hit(proto: str, family: int) -> None:
        key = v4 if family == 1 else v6
        try:
            requests[key] += 1
        except KeyError:  # the first replay to a client of the other family
            requests[key] = 1
        if do:
            do_requests[base] += 1
        req_counts[req_bucket] += 1
        req_sums[sized] += req_size
        dur_counts[dur_bucket] += 1
        dur_sums[base] += HIT_DURATION_S
        resp_counts[resp_bucket] += 1
        resp_sums[sized] += resp_size
        responses[answered] += 1

    return hit


def _series(
    histogram: Histogram, key: LabelKey, value: float
) -> tuple[list[int], dict[LabelKey, float], int]:
    """A histogram series' bucket counts and sums (created if new) and the bucket of `value`."""
    counts = histogram.counts.get(key)
    if counts is None:
        counts = histogram.counts[key] = [0] * (len(histogram.bounds) + 1)
        histogram.sums[key] = 0.0
    return counts, histogram.sums, bisect_left(histogram.bounds, value)


class OfferHolder(WriterWrapper):
    """Keeps a fast-path offer until the plugin has counted the reply it belongs to."""

    __slots__ = ("held",)

    def __init__(self, inner: ResponseWriter) -> None:
        super().__init__(inner)
        self.held: Offer | None = None

    def offer_fastpath(self, offer: Offer) -> None:
        """Keep the offer; the plugin passes it on with its hit recorder attached."""
        self.held = offer
