"""The API-client series (client-go's `rest_client_*`, CoreDNS's names) from real list and watch
requests to the fake API server: status codes, `<error>` without a response, list timing, and the
rate-limiter histogram that only ever sees 0 s (there is no client-side limiter)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from clusterdns.k8s.connect import ApiAccess, api_client, close_client
from clusterdns.k8s.objects import Kind
from clusterdns.k8s.source import Forbidden, KubeSource, Unavailable, url_host
from clusterdns.plugins.kubernetes import REST_CLIENT_BUCKETS, RestClientMetrics
from tests.k8s.fakeapi import FakeApi
from tests.metrics.scrape import parse_scrape


class _Publish(Collector):
    def __init__(self, metrics: RestClientMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics.collect()


@pytest.fixture
def fake() -> Iterator[FakeApi]:
    api = FakeApi().start()
    yield api
    api.down()


def scrape(metrics: RestClientMetrics) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Publish(metrics))
    return generate_latest(registry).decode()


def test_url_host_is_host_and_port() -> None:
    assert url_host("https://10.96.0.1:443") == "10.96.0.1:443"
    assert url_host("https://kubernetes.default.svc") == "kubernetes.default.svc"
    assert url_host("http://user:pw@[fd00::1]:6443/prefix") == "[fd00::1]:6443"


def test_lists_and_watches_are_counted_lists_are_timed(fake: FakeApi) -> None:
    metrics = RestClientMetrics()
    api = api_client(ApiAccess(endpoint=fake.url))
    try:
        source = KubeSource(api, connect_timeout_s=2, read_timeout_s=5, observer=metrics)
        host = f"127.0.0.1:{fake.port}"
        assert source.host == host
        page = source.list(Kind.NAMESPACE)
        stream = source.watch(Kind.NAMESPACE, resource_version=page.resource_version, timeout_s=1)
        stream.close()
        fake.forbid("services")
        with pytest.raises(Forbidden):
            source.list(Kind.SERVICE)
        fake.down()
        with pytest.raises(Unavailable):
            source.list(Kind.SERVICE)
        with pytest.raises(Unavailable):
            source.watch(Kind.SERVICE, resource_version="1", timeout_s=1)
    finally:
        close_client(api)

    s = parse_scrape(scrape(metrics))
    requests = "coredns_kubernetes_rest_client_requests_total"
    assert s.value(requests, code="200", method="GET", host=host) == 2  # a list and a watch
    assert s.value(requests, code="403", method="GET", host=host) == 1
    assert s.value(requests, code="<error>", method="GET", host=host) == 2
    duration = "coredns_kubernetes_rest_client_request_duration_seconds"
    assert s.value(f"{duration}_count", verb="GET", host=host) == 3  # lists only, failed ones too
    assert s.families[duration].buckets == pytest.approx(REST_CLIENT_BUCKETS)
    limiter = "coredns_kubernetes_rest_client_rate_limiter_duration_seconds"
    assert s.value(f"{limiter}_count", verb="GET", host=host) == 3
    assert s.value(f"{limiter}_sum") == 0
    assert s.families[limiter].buckets == pytest.approx(REST_CLIENT_BUCKETS)
