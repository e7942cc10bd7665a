"""Kubernetes API faults under load and churn (reliability.md K2, K3, K4, and the API's 500s and
slow answers): the real server watching the API test double on loopback.

Each test keeps a `Load` asking names that never change (and must answer the same all along)
while the fault runs, and a `Churn` changing Services at 10 objects/s; when the fault is over,
the watch cache must hold exactly the API's objects (tables and IP index: nothing lost, nothing
duplicated, nothing stale) and the churned names must answer what the API says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Final

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from clusterdns.k8s.objects import Kind
from clusterdns.k8s.store import Store
from clusterdns.server.lifecycle import Server
from tests.dnstest import running_server
from tests.e2e.support import http_get, http_port, query, reference_objects
from tests.faults.support import (
    JSON,
    Churn,
    Load,
    Tally,
    addresses,
    api_down,
    api_up,
    churn_diff,
    diff_store,
    expect_addresses,
    kubernetes_store,
    slow_proxy,
)
from tests.k8s.fakeapi import FakeApi

SIDE: Final = "127.0.0.1:0"
WAIT_S: Final = 60.0
"""Bound on any convergence (API back up, relist done); generous for a loaded 2-core machine."""
STABLE: Final = {
    "kubernetes.default.svc.cluster.local.": {"10.96.0.1"},
    "api.prod.svc.cluster.local.": {"10.96.5.5"},
    "web.prod.svc.cluster.local.": {"10.244.1.10", "10.244.2.11", "10.244.3.12"},
    "10-244-1-30.prod.pod.cluster.local.": {"10.244.1.30"},
}
"""Names of the reference cluster that no fault test changes, and what they answer."""
KINDS: Final = (Kind.NAMESPACE, Kind.SERVICE, Kind.ENDPOINTSLICE)


def corefile(url: str, *options: str) -> str:
    extra = "".join(f"        {o}\n" for o in options)
    return (
        ".:0 {\n"
        "    bind 127.0.0.1\n"
        f"    ready {SIDE}\n"
        "    kubernetes cluster.local {\n"
        f"        endpoint {url}\n"
        "        pods insecure\n"
        f"{extra}"
        "    }\n"
        "}\n"
    )


async def ready(server: Server) -> tuple[int, str]:
    return await http_get(http_port(server, SIDE), "/ready")


async def eventually(
    probe: Callable[[], Awaitable[object]] | Callable[[], object],
    *,
    what: str,
    timeout_s: float = WAIT_S,
) -> None:
    """Until `probe()` returns a falsy value (no problems left), at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if not result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s; left: {result}")
        await asyncio.sleep(0.05)


@pytest.fixture
def fake() -> Iterator[FakeApi]:
    api = FakeApi().start()
    api.load(reference_objects())
    yield api
    api.down()


@asynccontextmanager
async def serving(url: str, *options: str, synced: bool = True) -> AsyncIterator[Server]:
    async with running_server(corefile(url, *options)) as server:
        if synced:

            async def not_ready() -> bool:
                return await ready(server) != (200, "OK")

            await eventually(not_ready, what="/ready 200")
        yield server


def stable_load(server: Server) -> Load:
    return Load(server.port(), sorted(STABLE), expect_addresses(STABLE)).start()


def assert_clean(tally: Tally) -> None:
    assert tally.sent > 0 and tally.lost == 0 and tally.wrong == 0, tally.summary()


async def converged(store: Store, fake: FakeApi, churn: Churn | None = None) -> None:
    def left() -> list[str]:
        return diff_store(store, fake, KINDS) + (churn_diff(store, churn) if churn else [])

    await eventually(left, what="the watch cache equals the API's objects")


async def check_churned_names(port: int, churn: Churn) -> None:
    """Every live churn Service answers its address; every deleted one is NXDOMAIN."""
    for name, ip in sorted(churn.live.items())[-20:]:
        reply = await query(port, churn.fqdn(name))
        assert addresses(reply) == {ip}, f"{name}: {reply}"
    for name in sorted(churn.gone)[-10:]:
        reply = await query(port, churn.fqdn(name))
        assert reply.rcode() == dns.rcode.NXDOMAIN, f"{name} was deleted: {reply}"


# -- K2: API down mid-watch ------------------------------------------------------------------------
CHANGES_WHILE_DOWN: Final = 10


async def test_api_killed_mid_watch_and_restarted_loses_nothing(fake: FakeApi) -> None:
    async with serving(fake.url) as server:
        store = kubernetes_store(server.config)
        churn = Churn(fake, rate_per_s=10.0)
        churning = asyncio.get_running_loop().create_task(churn.run())
        load = stable_load(server)
        await converged(store, fake, churn)

        api_down(fake)  # refuse connections, cut every open watch mid-stream
        # Changes made while the server cannot see them: made here, not left to the background
        # churn's timing (on a loaded machine it may not have run at all meanwhile).
        for _ in range(CHANGES_WHILE_DOWN):
            churn.step()
        await load.until(load.tally.sent + 200)  # answers go on while the API is down
        assert churn_diff(store, churn), "changes made while the API was down cannot be known"
        api_up(fake)

        await converged(store, fake, churn)
        churn.stop()
        await churning
        await converged(store, fake, churn)
        tally = await load.stop()
        assert_clean(tally)
        await check_churned_names(server.port(), churn)
        assert await ready(server) == (200, "OK")


# -- K3: 410 Gone -> relist, no NXDOMAIN window ----------------------------------------------------
async def test_expired_watch_relists_without_an_nxdomain_window(fake: FakeApi) -> None:
    async with serving(fake.url) as server:
        store = kubernetes_store(server.config)
        churn = Churn(fake, rate_per_s=10.0)
        churning = asyncio.get_running_loop().create_task(churn.run())
        load = stable_load(server)
        await converged(store, fake, churn)
        resources = ("namespaces", "services", "endpointslices")
        for gone_as_http in (False, True, False):
            fake.gone_as_http = gone_as_http  # 410 as an ERROR event, or as the HTTP status
            lists = len(fake.requests(verb="list"))
            # Cut the watches and keep them out (403) while changes go on...
            seen = {r: len(fake.requests(r)) for r in resources}
            for r in resources:
                fake.forbid(r)
            fake.drop_watches()
            await eventually(
                lambda seen=seen: [r for r in resources if len(fake.requests(r)) <= seen[r]],
                what="every watch cut and refused once",
            )
            for _ in range(5):
                churn.step()  # changes while cut off
            fake.compact()  # ...and forget the history: re-watching from the kept version is 410
            for r in resources:
                fake.allow(r)
            await eventually(
                lambda lists=lists: len(fake.requests(verb="list")) < lists + len(KINDS),
                what="a relist of every kind",
            )
            await converged(store, fake, churn)
        churn.stop()
        await churning
        await converged(store, fake, churn)
        tally = await load.stop()
        assert_clean(tally)  # not one NXDOMAIN (or SERVFAIL) for a name that always existed
        await check_churned_names(server.port(), churn)


# -- the API failing: 500, 403 after sync ----------------------------------------------------------
async def test_api_errors_are_retried_and_answers_continue(fake: FakeApi) -> None:
    async with serving(fake.url) as server:
        store = kubernetes_store(server.config)
        churn = Churn(fake, rate_per_s=10.0)
        churning = asyncio.get_running_loop().create_task(churn.run())
        load = stable_load(server)
        await converged(store, fake, churn)
        before = len(fake.requests())
        fake.fail_next(6, 500)  # the next lists and watches, of any resource
        fake.drop_watches()
        for _ in range(5):
            churn.step()  # changes the failing watches have to catch up with
        await eventually(lambda: len(fake.requests()) < before + 6, what="six failed requests")
        await converged(store, fake, churn)
        churn.stop()
        await churning
        await converged(store, fake, churn)
        assert_clean(await load.stop())


async def test_rbac_revoked_after_sync_keeps_the_last_state(fake: FakeApi) -> None:
    async with serving(fake.url) as server:
        store = kubernetes_store(server.config)
        churn = Churn(fake, rate_per_s=10.0)
        load = stable_load(server)
        await converged(store, fake)
        fake.forbid("services")
        fake.forbid("endpointslices")
        fake.drop_watches()
        forbidden_from = len(fake.requests("services"))
        await eventually(
            lambda: len(fake.requests("services")) <= forbidden_from,
            what="a denied services request (the watch cut and refused)",
        )
        for _ in range(20):
            churn.step()  # invisible while forbidden
        await load.until(load.tally.sent + 100)
        assert churn_diff(store, churn)
        fake.allow("services")
        fake.allow("endpointslices")
        await converged(store, fake, churn)
        assert_clean(await load.stop())
        await check_churned_names(server.port(), churn)


# -- slow API answers ------------------------------------------------------------------------------
async def test_slow_api_at_startup_serves_after_startup_timeout_then_syncs(fake: FakeApi) -> None:
    async with slow_proxy(fake.port) as proxy:
        proxy.hold()  # the API takes requests and answers nothing until released
        started = time.monotonic()
        async with serving(proxy.url, "startup_timeout 1s", synced=False) as server:
            took = time.monotonic() - started
            store = kubernetes_store(server.config)
            # Nothing came back from the API, so start-up ended on startup_timeout, not a sync.
            assert not store.synced and took >= 1.0, (store.synced, took)
            port = server.port()
            reply = await query(port, "nosuch.prod.svc.cluster.local.")
            assert reply.rcode() == dns.rcode.SERVFAIL, "never NXDOMAIN before the sync"
            assert (await ready(server))[0] == 503
            await eventually(lambda: not proxy.held, what="an answer of the API held back")
            assert not store.synced
            proxy.release()
            await converged(store, fake)
            reply = await query(port, "nosuch.prod.svc.cluster.local.")
            assert reply.rcode() == dns.rcode.NXDOMAIN
            assert addresses(await query(port, "api.prod.svc.cluster.local.")) == {"10.96.5.5"}


async def test_slow_api_after_sync_delays_changes_but_not_answers(fake: FakeApi) -> None:
    async with slow_proxy(fake.port) as proxy, serving(proxy.url) as server:
        store = kubernetes_store(server.config)
        churn = Churn(fake, rate_per_s=10.0)
        churning = asyncio.get_running_loop().create_task(churn.run())
        load = stable_load(server)
        await converged(store, fake, churn)
        proxy.delay_s = 0.5  # every chunk of every list and watch event arrives half a second late
        for _ in range(10):
            churn.step()  # twenty objects changed while the API is slow
        await load.until(load.tally.sent + 400)
        proxy.delay_s = 0.0
        churn.stop()
        await churning
        await converged(store, fake, churn)
        assert_clean(await load.stop())
        await check_churned_names(server.port(), churn)


# -- K6: a Service with 5,000 ready endpoints ------------------------------------------------------
async def test_five_thousand_endpoints_truncate_over_udp_and_fill_tcp(fake: FakeApi) -> None:
    fake.create(
        {
            "kind": "Service",
            "metadata": {"namespace": "prod", "name": "huge"},
            "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]},
        }
    )
    for part in range(5):  # the API caps a slice at 1,000 endpoints
        ips = [f"10.200.{part * 4 + i // 250}.{i % 250 + 1}" for i in range(1000)]
        fake.create(endpoint_slice_of("prod", "huge", ips, name=f"huge-{part}"))
    name = "huge.prod.svc.cluster.local."
    async with serving(fake.url) as server:
        port = server.port()
        await eventually(
            lambda: len(list(kubernetes_store(server.config).slices_of("prod", "huge"))) < 5,
            what="five slices in the store",
        )
        for edns, limit in ((None, 512), (1232, 1232), (4096, 4096)):
            q = dns.message.make_query(
                name, "A", use_edns=0 if edns else False, payload=edns or 512
            )
            reply = await dns.asyncquery.udp(
                q, "127.0.0.1", port=port, timeout=10, raise_on_truncation=False
            )
            wire = reply.to_wire()
            assert reply.flags & dns.flags.TC and len(wire) <= limit, (edns, len(wire))
            assert reply.rcode() == dns.rcode.NOERROR and 0 < len(addresses(reply)) < 5000
        tcp = await dns.asyncquery.tcp(
            dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=10
        )
        assert len(tcp.to_wire()) <= 65535
        got = len(addresses(tcp))
        # 5,000 A records do not fit 65,535 bytes: as many as fit, with TC (coredns#4343).
        assert got > 3000 and (got == 5000 or tcp.flags & dns.flags.TC), got


def endpoint_slice_of(ns: str, service_name: str, ips: list[str], *, name: str) -> JSON:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


# -- K8: a pod IP reused in another namespace (`pods verified`) ------------------------------------
def pod(ns: str, name: str, ip: str) -> JSON:
    return {
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


async def test_pod_ip_reused_in_another_namespace_answers_only_the_new_pod(fake: FakeApi) -> None:
    fake.create({"kind": "Namespace", "metadata": {"name": "team-a"}})
    fake.create({"kind": "Namespace", "metadata": {"name": "team-b"}})
    fake.create(pod("team-a", "old", "10.244.9.9"))
    async with serving(fake.url, "pods verified") as server:
        port = server.port()
        a, b = "10-244-9-9.team-a.pod.cluster.local.", "10-244-9-9.team-b.pod.cluster.local."
        assert addresses(await query(port, a)) == {"10.244.9.9"}
        assert (await query(port, b)).rcode() == dns.rcode.NXDOMAIN
        fake.delete("Pod", "team-a", "old")
        fake.create(pod("team-b", "new", "10.244.9.9"))

        async def not_moved() -> bool:
            ra, rb = await query(port, a), await query(port, b)
            return not (ra.rcode() == dns.rcode.NXDOMAIN and addresses(rb) == {"10.244.9.9"})

        await eventually(not_moved, what="the address answered only in team-b")
