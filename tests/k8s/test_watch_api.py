"""Reflectors and the controller with the real kubernetes client against the fake API server.

The client is built by connect.py from `endpoint http://127.0.0.1:PORT`; changes land in a real
Store on the test's event loop. Tests wait on store/controller changes or on the fake's request
log, each with a generous timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from clusterdns.k8s.connect import ApiAccess, api_client, close_client
from clusterdns.k8s.controller import POD_FIELD_SELECTOR, Controller
from clusterdns.k8s.objects import Kind
from clusterdns.k8s.reflector import BackoffPolicy
from clusterdns.k8s.source import Forbidden, Gone, KubeSource, Unavailable
from clusterdns.k8s.store import Store

from .fakeapi import FakeApi
from .scripted import Changes

JSON = dict[str, Any]
FAST = BackoffPolicy(initial_s=0.02, max_s=0.2)
LOGGER = "clusterdns.plugins.kubernetes"
ALL = [Kind.SERVICE, Kind.ENDPOINTSLICE, Kind.NAMESPACE, Kind.POD]


# -- objects as the API holds them -----------------------------------------------------------------
def svc(ns: str, name: str, ip: str = "10.96.0.10", labels: dict[str, str] | None = None) -> JSON:
    return {
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def eps(ns: str, name: str, service: str, *ips: str) -> JSON:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def namespace(name: str) -> JSON:
    return {"kind": "Namespace", "metadata": {"name": name}}


def pod(ns: str, name: str, ip: str, phase: str = "Running") -> JSON:
    return {
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name},
        "status": {"phase": phase, "podIP": ip},
    }


# -- harness ---------------------------------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FakeApi]:
    api = FakeApi().start()
    yield api
    api.down()


@dataclass
class Harness:
    fake: FakeApi
    store: Store
    ctrl: Controller
    changes: Changes

    async def until(self, predicate: Any, timeout_s: float = 20.0) -> None:
        await self.changes.until(predicate, timeout_s)

    async def wait_fake(self, predicate: Any, timeout_s: float = 20.0) -> None:
        await asyncio.to_thread(self.fake.wait_for, predicate, timeout_s)

    def watch_rvs(self, resource: str) -> list[str | None]:
        return [r.rv for r in self.fake.requests(resource, "watch")]


@asynccontextmanager
async def watching(
    fake: FakeApi,
    kinds: Iterable[Kind],
    *,
    read_timeout_s: float = 10.0,
    watch_timeout_s: int = 300,
    label_selector: str | None = None,
    start: bool = True,
) -> AsyncIterator[Harness]:
    client = api_client(ApiAccess(endpoint=fake.url))
    source = KubeSource(client, connect_timeout_s=2.0, read_timeout_s=read_timeout_s)
    store = Store()
    kinds = list(kinds)
    store.expect(kinds)
    ctrl = Controller(
        source,
        store,
        asyncio.get_running_loop(),
        kinds,
        label_selector=label_selector,
        watch_timeout_s=watch_timeout_s,
        backoff=FAST,
    )
    changes = Changes(store, ctrl)
    if start:
        ctrl.start()
    try:
        yield Harness(fake, store, ctrl, changes)
    finally:
        ctrl.stop()
        assert await asyncio.to_thread(ctrl.join, 10), "reflector threads did not stop"
        close_client(client)


# -- tests -----------------------------------------------------------------------------------------
async def test_initial_list_is_paged(fake: FakeApi) -> None:
    fake.load([svc("apps", "web")])
    fake.load(
        eps("apps", f"web-{i:04d}", "web", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(1200)
    )
    list_rv = str(fake.rv)
    async with watching(fake, [Kind.SERVICE, Kind.ENDPOINTSLICE]) as h:
        assert await h.ctrl.wait_synced(30)
        assert h.store.synced
        assert len(h.store.slices) == 1200
        assert h.store.has_endpoints("apps", "web")
        lists = fake.requests("endpointslices", "list")
        assert [r.params.get("limit") for r in lists] == ["500", "500", "500"]
        assert lists[0].params.get("continue") is None
        tokens = [r.params.get("continue") for r in lists[1:]]
        assert all(tokens) and len(set(tokens)) == 2
        await h.wait_fake(lambda: fake.open_watches("endpointslices") == 1)
        watch = fake.requests("endpointslices", "watch")[0]
        assert watch.rv == list_rv
        assert watch.params["allowWatchBookmarks"] == "true"
        assert watch.params["timeoutSeconds"] == "300"


async def test_expired_continue_token_restarts_the_list(fake: FakeApi) -> None:
    fake.load(svc("apps", f"s{i}", f"10.96.1.{i}") for i in range(1, 12))

    async with watching(fake, [Kind.SERVICE], start=False) as h:
        source = h.ctrl.source
        assert isinstance(source, KubeSource)
        first = source.list(Kind.SERVICE, limit=5)
        assert first.continue_token and len(first.items) == 5
        fake.expire_continue_tokens()
        with pytest.raises(Gone, match="continue parameter is too old"):
            source.list(Kind.SERVICE, limit=5, continue_token=first.continue_token)


async def test_watch_events_are_applied(fake: FakeApi) -> None:
    fake.load([namespace("apps"), namespace("tmp"), svc("apps", "web")])
    fake.load([eps("apps", "web-1", "web", "10.244.1.5")])
    async with watching(fake, [Kind.SERVICE, Kind.ENDPOINTSLICE, Kind.NAMESPACE]) as h:
        assert await h.ctrl.wait_synced(20)
        fake.create(svc("apps", "db", "10.96.0.20"))
        fake.update(eps("apps", "web-1", "web", "10.244.1.5", "10.244.2.6"))
        fake.delete("Namespace", "", "tmp")
        await h.until(
            lambda: (
                ("apps", "db") in h.store.services
                and len(h.store.slices[("apps", "web-1")].addresses) == 2
                and not h.store.has_namespace("tmp")
            )
        )
        counts = h.store.events.counts
        assert counts[("services", "ADDED")] == 1
        assert counts[("endpointslices", "MODIFIED")] == 1
        assert counts[("namespaces", "DELETED")] == 1


async def test_event_lines_split_across_chunks() -> None:
    fake = FakeApi(split_lines=True).start()
    try:
        async with watching(fake, [Kind.SERVICE]) as h:
            assert await h.ctrl.wait_synced(20)
            for i in range(5):
                fake.create(svc("apps", f"s{i}", f"10.96.0.{i + 1}"))
            await h.until(lambda: len(h.store.services) == 5)
            assert h.store.events.counts[("services", "ADDED")] == 5
    finally:
        fake.down()


async def test_bookmark_moves_the_version_used_to_rewatch(fake: FakeApi) -> None:
    async with watching(fake, [Kind.SERVICE, Kind.NAMESPACE]) as h:
        assert await h.ctrl.wait_synced(20)
        await h.wait_fake(lambda: fake.open_watches("services") == 1)
        first_rv = h.watch_rvs("services")[0]
        fake.create(namespace("other"))  # moves the global RV; the services watch sees nothing
        bookmark_rv = fake.bookmark()
        assert str(bookmark_rv) != first_rv
        await h.wait_fake(lambda: fake.sent("services") >= 1)
        fake.drop_watches()
        await h.wait_fake(lambda: len(fake.requests("services", "watch")) >= 2)
        assert h.watch_rvs("services")[:2] == [first_rv, str(bookmark_rv)]


@pytest.mark.parametrize("midline", [False, True], ids=["between-events", "mid-line"])
async def test_dropped_watch_resumes_without_loss_or_duplicates(
    fake: FakeApi, midline: bool
) -> None:
    async with watching(fake, [Kind.SERVICE]) as h:
        assert await h.ctrl.wait_synced(20)
        s1 = fake.create(svc("apps", "s1", "10.96.0.1"))
        await h.until(lambda: ("apps", "s1") in h.store.services)
        fake.drop_watches(midline=midline)
        fake.create(svc("apps", "s2", "10.96.0.2"))
        fake.create(svc("apps", "s3", "10.96.0.3"))
        fake.delete("Service", "apps", "s1")
        await h.until(lambda: set(h.store.services) == {("apps", "s2"), ("apps", "s3")})
        counts = h.store.events.counts
        assert counts[("services", "ADDED")] == 3
        assert counts[("services", "DELETED")] == 1
        assert counts[("services", "RELIST")] == 1
        assert h.watch_rvs("services")[1] == s1["metadata"]["resourceVersion"]
        assert len(fake.requests("services", "list")) == 1


@pytest.mark.parametrize("gone_as_http", [False, True], ids=["error-event", "http-410"])
async def test_410_relists_and_notices_deletes_made_while_disconnected(
    fake: FakeApi, gone_as_http: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    fake.load([svc("apps", "web"), svc("apps", "db", "10.96.0.20")])
    async with watching(fake, [Kind.SERVICE]) as h:
        assert await h.ctrl.wait_synced(20)
        await h.wait_fake(lambda: fake.open_watches("services") == 1)
        old_rv = h.watch_rvs("services")[0]
        fake.down()
        await h.until(lambda: not h.ctrl.status().connected)
        fake.delete("Service", "apps", "db")
        fake.create(svc("apps", "api", "10.96.0.30"))
        fake.compact()
        fake.gone_as_http = gone_as_http
        fake.up()
        await h.until(lambda: set(h.store.services) == {("apps", "web"), ("apps", "api")})
        assert len(fake.requests("services", "list")) == 2
        assert old_rv in h.watch_rvs("services")[1:]
        await h.until(lambda: h.ctrl.status().connected)
    relists = [r.getMessage() for r in caplog.records if r.getMessage().startswith("relisting")]
    assert len(relists) == 1 and "too old resource version" in relists[0], relists


async def test_history_window_forces_a_relist() -> None:
    fake = FakeApi(history_limit=3).start()
    try:
        fake.load([svc("apps", "web")])
        async with watching(fake, [Kind.SERVICE]) as h:
            assert await h.ctrl.wait_synced(20)
            fake.down()
            await h.until(lambda: not h.ctrl.status().connected)
            for i in range(5):  # more changes than the history keeps
                fake.create(svc("apps", f"s{i}", f"10.96.0.{i + 1}"))
            fake.delete("Service", "apps", "web")
            fake.up()
            await h.until(lambda: set(h.store.services) == {("apps", f"s{i}") for i in range(5)})
            assert len(fake.requests("services", "list")) == 2
    finally:
        fake.down()


async def test_forbidden_is_logged_and_never_synced(
    fake: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    fake.load([svc("apps", "web")])
    fake.forbid("endpointslices")
    async with watching(fake, [Kind.SERVICE, Kind.ENDPOINTSLICE]) as h:
        assert not await h.ctrl.wait_synced(0.6)
        await h.until(lambda: bool(h.ctrl.status().forbidden))
        assert h.ctrl.status().forbidden == ("endpointslices.discovery.k8s.io",)
        assert not h.store.synced
        assert ("apps", "web") in h.store.services  # partial data is still served
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(
            "endpointslices.discovery.k8s.io is forbidden: "
            'User "system:serviceaccount:kube-system:coredns" cannot list resource '
            '"endpointslices" in API group "discovery.k8s.io" at the cluster scope' in m
            for m in errors
        ), errors
        assert all(r.name == LOGGER for r in caplog.records if r.levelno == logging.ERROR)
        fake.allow("endpointslices")
        assert await h.ctrl.wait_synced(20)


async def test_api_down_at_start_then_up(fake: FakeApi) -> None:
    fake.load([svc("apps", "web")])
    fake.down()
    async with watching(fake, [Kind.SERVICE]) as h:
        assert not await h.ctrl.wait_synced(0.5)
        await h.until(lambda: h.ctrl.status().errors != ())
        status = h.ctrl.status()
        assert not status.connected and not status.synced
        assert "refused" in dict(status.errors)["services"].lower()
        fake.up()
        assert await h.ctrl.wait_synced(20)
        assert ("apps", "web") in h.store.services


async def test_api_down_after_sync_keeps_the_last_state(
    fake: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    fake.load([namespace("apps"), svc("apps", "web")])
    async with watching(fake, [Kind.SERVICE, Kind.NAMESPACE]) as h:
        assert await h.ctrl.wait_synced(20)
        fake.down()
        await h.until(lambda: not h.ctrl.status().connected)
        assert ("apps", "web") in h.store.services and h.store.has_namespace("apps")
        assert h.ctrl.synced and h.store.synced
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("keep answering from the last known state" in m for m in warnings), warnings
        fake.up()
        fake.create(svc("apps", "db", "10.96.0.20"))
        await h.until(lambda: ("apps", "db") in h.store.services and h.ctrl.status().connected)
        assert ("apps", "web") in h.store.services
        assert any("reachable again" in r.getMessage() for r in caplog.records)


async def test_server_errors_are_retried(fake: FakeApi) -> None:
    fake.load([svc("apps", "web")])
    fake.fail_next(2, 500, resource="services", verb="list")
    async with watching(fake, [Kind.SERVICE]) as h:
        assert await h.ctrl.wait_synced(20)
        assert len(fake.requests("services", "list")) == 3


async def test_quiet_watch_hits_the_read_timeout_and_rewatches(
    fake: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with watching(fake, [Kind.SERVICE], read_timeout_s=0.3) as h:
        assert await h.ctrl.wait_synced(20)
        await h.wait_fake(lambda: len(fake.requests("services", "watch")) >= 3)
        rvs = h.watch_rvs("services")
        assert len(set(rvs)) == 1
        assert h.ctrl.status().connected
        assert len(fake.requests("services", "list")) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_watch_timeout_seconds_ends_the_stream_cleanly(fake: FakeApi) -> None:
    async with watching(fake, [Kind.SERVICE], watch_timeout_s=1) as h:
        assert await h.ctrl.wait_synced(20)
        await h.wait_fake(lambda: len(fake.requests("services", "watch")) >= 2)
        fake.create(svc("apps", "web"))
        await h.until(lambda: ("apps", "web") in h.store.services)
        watches = fake.requests("services", "watch")
        assert {r.params["timeoutSeconds"] for r in watches} == {"1"}
        assert len(fake.requests("services", "list")) == 1


async def test_pod_phase_field_selector_and_label_selector(fake: FakeApi) -> None:
    fake.load(
        [
            pod("apps", "run", "10.244.0.5"),
            pod("apps", "done", "10.244.0.6", phase="Succeeded"),
            svc("apps", "web", labels={"env": "prod"}),
            svc("apps", "dev", "10.96.0.11", labels={"env": "dev"}),
        ]
    )
    async with watching(fake, [Kind.POD, Kind.SERVICE], label_selector="env!=dev") as h:
        assert await h.ctrl.wait_synced(20)
        assert set(h.store.pods) == {("apps", "run")}
        assert set(h.store.services) == {("apps", "web")}
        assert fake.requests("pods", "list")[0].params["fieldSelector"] == POD_FIELD_SELECTOR
        assert fake.requests("pods", "list")[0].params["labelSelector"] == "env!=dev"
        fake.update(pod("apps", "run", "10.244.0.5", phase="Failed"))
        await h.until(lambda: not h.store.pods)
        assert h.store.events.counts[("pods", "DELETED")] == 1


async def test_source_maps_errors_to_types(fake: FakeApi) -> None:
    client = api_client(ApiAccess(endpoint=fake.url))
    try:
        source = KubeSource(client, connect_timeout_s=2, read_timeout_s=5)
        fake.fail_next(1, 403, resource="pods", verb="watch")
        with pytest.raises(Forbidden) as forbidden:
            source.watch(Kind.POD, resource_version="1", timeout_s=5)
        assert forbidden.value.verb == "watch"
        assert "cannot watch resource" in forbidden.value.message
        fake.fail_next(1, 503)
        with pytest.raises(Unavailable) as unavailable:
            source.list(Kind.NAMESPACE)
        assert unavailable.value.status == 503
        fake.down()
        with pytest.raises(Unavailable, match="refused"):
            source.list(Kind.NAMESPACE)
    finally:
        close_client(client)
