"""The real server watching a Kubernetes API end to end: changes, outages, RBAC, metrics.

The API is `tests/k8s/fakeapi.py` (the real list/watch wire protocol on loopback), seeded with
the reference cluster; the server runs `kubernetes cluster.local { endpoint http://127.0.0.1:PORT }`
with `ready` and `prometheus` on a loopback side listener. A change made in the fake API is
waited for on the DNS answer itself (bounded, generous timeouts), then shown through `dig`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import dns.message
import dns.rcode
import pytest

from clusterdns.server.lifecycle import Server
from tests.dnstest import Case, dig, running_server
from tests.e2e.support import (
    JSON,
    addresses,
    check,
    eventually,
    find_object,
    http_get,
    http_port,
    metric,
    parse_dig,
    query,
    records,
    reference_objects,
    soa,
    soa_serial,
    with_serial,
)
from tests.k8s.fakeapi import FakeApi

SIDE = "127.0.0.1:0"
"""The side listener of `ready` and `prometheus` (one listener serves both paths)."""
LOGGER = "clusterdns.plugins.kubernetes"
AA = "qr aa rd"
SOA5 = soa(ttl=5)
CONNECTED = "clusterdns_kubernetes_api_connected"
PROGRAMMING = "coredns_kubernetes_dns_programming_duration_seconds"
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"


@pytest.fixture
def fake() -> Iterator[FakeApi]:
    api = FakeApi().start()
    api.load(reference_objects())
    yield api
    api.down()


def corefile(url: str, *options: str) -> str:
    extra = "".join(f"        {o}\n" for o in options)
    return (
        ".:0 {\n"
        "    bind 127.0.0.1\n"
        f"    ready {SIDE}\n"
        f"    prometheus {SIDE}\n"
        "    kubernetes cluster.local {\n"
        f"        endpoint {url}\n"
        f"{extra}"
        "    }\n"
        "}\n"
    )


@asynccontextmanager
async def serving(fake: FakeApi, *options: str, synced: bool = True) -> AsyncIterator[Server]:
    """The server on `fake`; with `synced`, returns once `/ready` says the watches have synced
    (start-up waits only `startup_timeout` for that, which a loaded machine may exceed)."""
    async with running_server(corefile(fake.url, *options)) as server:
        if synced:
            await eventually(lambda: ready(server), lambda r: r == (200, "OK"), what="/ready 200")
        yield server


async def ready(server: Server) -> tuple[int, str]:
    return await http_get(http_port(server, SIDE), "/ready")


async def metrics_text(server: Server) -> str:
    status, body = await http_get(http_port(server, SIDE), "/metrics")
    assert status == 200
    return body


async def wait_metric(server: Server, name: str, labels: str, want: float) -> None:
    async def probe() -> float | None:
        return metric(await metrics_text(server), name, labels)

    await eventually(probe, lambda v: v == want, what=f"{name}{{{labels}}} == {want}")


async def wait_answer(
    port: int, qname: str, accept: Callable[[dns.message.Message], bool], qtype: str = "A"
) -> dns.message.Message:
    return await eventually(
        lambda: query(port, qname, qtype), accept, what=f"the answer for {qname} {qtype}"
    )


def service(ns: str, name: str, ip: str) -> JSON:
    return {
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def endpoint_slice(ns: str, name: str, svc: str, *ips: str) -> JSON:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def rfc3339_nanos(t: float) -> str:
    """`t` as the slice controller writes the trigger-time annotation (nanoseconds, Z)."""
    whole = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{whole}123Z"


# -- dynamic cases ---------------------------------------------------------------------------------
async def test_created_service_answers(fake: FakeApi) -> None:
    name = "new.prod.svc.cluster.local."
    async with serving(fake) as server:
        port = server.port()
        assert (await query(port, name)).rcode() == dns.rcode.NXDOMAIN
        fake.create(service("prod", "new", "10.96.8.8"))
        fake.create(endpoint_slice("prod", "new-x1y2z", "new", "10.244.8.8"))
        await wait_answer(port, name, lambda r: addresses(r) == {"10.96.8.8"})
        await wait_answer(port, f"10-244-8-8.{name}", lambda r: addresses(r) == {"10.244.8.8"})
        out = parse_dig(await dig(port, name.rstrip(".")))
        assert out.status == "NOERROR" and out.answer == records(f"{name} 5 IN A 10.96.8.8")
        out = parse_dig(await dig(port, f"_http._tcp.{name}", "SRV"))
        assert out.answer == records(f"_http._tcp.{name} 5 IN SRV 0 100 80 {name}")


async def test_endpoint_added_to_headless_service(fake: FakeApi) -> None:
    web = "web.prod.svc.cluster.local."
    before = {"10.244.1.10", "10.244.2.11", "10.244.3.12"}
    async with serving(fake) as server:
        port = server.port()
        assert addresses(await query(port, web)) == before
        sl = copy.deepcopy(
            find_object(reference_objects(), "EndpointSlice", "prod", "web-v4-8hx2m")
        )
        sl["endpoints"].append(
            {"addresses": ["10.244.6.6"], "conditions": {"ready": True}, "hostname": "web-2"}
        )
        fake.update(sl)
        await wait_answer(port, web, lambda r: addresses(r) == {*before, "10.244.6.6"})
        out = parse_dig(await dig(port, f"web-2.{web}"))
        assert out.status == "NOERROR" and out.answer == records(f"web-2.{web} 5 IN A 10.244.6.6")
        out = parse_dig(await dig(port, web))
        assert len(out.answer) == 4


async def test_external_name_change_moves_the_cname(fake: FakeApi) -> None:
    alias = "alias.prod.svc.cluster.local."
    target = "kubernetes.default.svc.cluster.local."
    async with serving(fake) as server:
        port = server.port()
        reply = await query(port, alias)
        assert reply.answer[0].to_text().endswith("api.prod.svc.cluster.local.")
        svc = copy.deepcopy(find_object(reference_objects(), "Service", "prod", "alias"))
        svc["spec"]["externalName"] = target.rstrip(".")
        fake.update(svc)
        await wait_answer(port, alias, lambda r: addresses(r) == {"10.96.0.1"})
        await check(
            port,
            Case(
                qname=alias,
                answer=[f"{alias} 5 IN CNAME {target}", f"{target} 5 IN A 10.96.0.1"],
                flags=AA,
            ),
        )
        out = parse_dig(await dig(port, alias, "CNAME"))
        assert out.answer == records(f"{alias} 5 IN CNAME {target}")


async def test_deleted_namespace_becomes_nxdomain(fake: FakeApi) -> None:
    api = "api.prod.svc.cluster.local."
    async with serving(fake) as server:
        port = server.port()
        assert addresses(await query(port, api)) == {"10.96.5.5"}
        fake.delete("Namespace", "", "prod")
        await wait_answer(port, api, lambda r: r.rcode() == dns.rcode.NXDOMAIN)
        serial = await soa_serial(port)
        for name in (api, "web.prod.svc.cluster.local.", "prod.svc.cluster.local."):
            await check(
                port, with_serial(Case(qname=name, rcode="NXDOMAIN", ns=[SOA5], flags=AA), serial)
            )
        out = parse_dig(await dig(port, api))
        assert out.status == "NXDOMAIN" and out.authority == records(SOA5)
        assert addresses(await query(port, "kubernetes.default.svc.cluster.local.")) == {
            "10.96.0.1"
        }


# -- start-up, outages, RBAC -----------------------------------------------------------------------
async def test_api_down_at_startup_servfail_then_synced(
    fake: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    nosuch = "nosuch.prod.svc.cluster.local."
    fake.down()  # the port stays reserved for `up()`, nothing listens on it
    async with serving(fake, "startup_timeout 1s", synced=False) as server:
        port = server.port()
        assert any(
            "starting server with unsynced Kubernetes API" in r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING
        )
        serial = await soa_serial(port)
        for proto in ("udp", "tcp"):
            await check(
                port,
                with_serial(Case(qname=nosuch, rcode="SERVFAIL", ns=[SOA5], flags=AA), serial),
                proto=proto,
            )
        assert await ready(server) == (503, "kubernetes")

        fake.up()
        await eventually(lambda: ready(server), lambda r: r[0] == 200, what="/ready 200")
        assert await ready(server) == (200, "OK")
        serial = await soa_serial(port)
        await check(
            port, with_serial(Case(qname=nosuch, rcode="NXDOMAIN", ns=[SOA5], flags=AA), serial)
        )
        assert addresses(await query(port, "api.prod.svc.cluster.local.")) == {"10.96.5.5"}


async def test_api_down_after_sync_answers_from_the_last_state(
    fake: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    api = "api.prod.svc.cluster.local."
    async with serving(fake) as server:
        port = server.port()
        assert await ready(server) == (200, "OK")
        assert metric(await metrics_text(server), CONNECTED) == 1

        fake.down()
        await wait_metric(server, CONNECTED, "", 0)
        assert any(
            "keep answering from the last known state" in r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING
        )
        serial = await soa_serial(port)
        for proto in ("udp", "tcp"):
            await check(port, Case(qname=api, answer=[f"{api} 5 IN A 10.96.5.5"]), proto=proto)
            await check(
                port,
                with_serial(
                    Case(qname="nosuch.prod.svc.cluster.local.", rcode="NXDOMAIN", ns=[SOA5]),
                    serial,
                ),
                proto=proto,
            )
        assert await ready(server) == (200, "OK")

        fake.up()
        await wait_metric(server, CONNECTED, "", 1)


async def test_forbidden_endpointslices_logged_and_not_ready(
    fake: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    fake.forbid("endpointslices")
    async with serving(fake, "startup_timeout 1s", synced=False) as server:
        port = server.port()

        def errors() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]

        async def forbidden_logged() -> list[str]:
            return errors()

        await eventually(
            forbidden_logged,
            lambda es: any("endpointslices.discovery.k8s.io is forbidden" in m for m in es),
            what="the RBAC error in the log",
        )
        message = next(m for m in errors() if "is forbidden" in m)
        assert 'cannot list resource "endpointslices" in API group "discovery.k8s.io"' in message
        assert await ready(server) == (503, "kubernetes")
        # partial data is served; a name error is still SERVFAIL (not synced)
        assert addresses(await query(port, "api.prod.svc.cluster.local.")) == {"10.96.5.5"}
        reply = await query(port, "nosuch.prod.svc.cluster.local.")
        assert reply.rcode() == dns.rcode.SERVFAIL

        # it stays not ready across the next denied attempts
        seen = len(fake.requests("endpointslices"))
        await eventually(
            lambda: _count(fake, "endpointslices"),
            lambda n: n >= seen + 1,
            what="another endpointslices request",
            timeout_s=60,
        )
        assert await ready(server) == (503, "kubernetes")

        fake.allow("endpointslices")
        await eventually(
            lambda: ready(server), lambda r: r == (200, "OK"), what="/ready 200", timeout_s=90
        )


async def _count(fake: FakeApi, resource: str) -> int:
    return len(fake.requests(resource))


# -- metrics ---------------------------------------------------------------------------------------
async def test_programming_latency_is_observed(fake: FakeApi) -> None:
    objects = reference_objects()
    async with serving(fake) as server:
        port = server.port()
        text = await metrics_text(server)
        assert metric(text, f"{PROGRAMMING}_count", 'service_kind="cluster_ip"') is None

        # a ClusterIP service's slice gains an endpoint; the controller stamped the change
        sl = copy.deepcopy(find_object(objects, "EndpointSlice", "prod", "api-4kq9z"))
        sl["metadata"]["annotations"] = {TRIGGER: rfc3339_nanos(time.time() - 0.25)}
        sl["endpoints"].append({"addresses": ["10.244.1.21"], "conditions": {"ready": True}})
        fake.update(sl)
        await wait_metric(server, f"{PROGRAMMING}_count", 'service_kind="cluster_ip"', 1)
        await wait_answer(port, "10-244-1-21.api.prod.svc.cluster.local.", lambda r: bool(r.answer))
        text = await metrics_text(server)
        total = metric(text, f"{PROGRAMMING}_sum", 'service_kind="cluster_ip"')
        assert total is not None and 0.25 <= total < 60
        assert metric(text, f"{PROGRAMMING}_bucket", 'le="+Inf",service_kind="cluster_ip"') == 1

        # a headless service's slice
        web = copy.deepcopy(find_object(objects, "EndpointSlice", "prod", "web-v4-8hx2m"))
        web["metadata"]["annotations"] = {TRIGGER: rfc3339_nanos(time.time())}
        fake.update(web)
        await wait_metric(
            server, f"{PROGRAMMING}_count", 'service_kind="headless_with_selector"', 1
        )
        # a slice change without the annotation adds no observation
        bare = copy.deepcopy(find_object(objects, "EndpointSlice", "prod", "bare-m4x1s"))
        bare["endpoints"].append({"addresses": ["10.244.4.41"], "conditions": {"ready": True}})
        fake.update(bare)
        await wait_answer(
            port,
            "bare.prod.svc.cluster.local.",
            lambda r: addresses(r) == {"10.244.4.40", "10.244.4.41"},
        )
        text = await metrics_text(server)
        assert metric(text, f"{PROGRAMMING}_count", 'service_kind="cluster_ip"') == 1
        assert metric(text, f"{PROGRAMMING}_count", 'service_kind="headless_with_selector"') == 1
