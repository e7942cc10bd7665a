"""The reflector state machine and the controller, driven by a scripted ListWatch (no network)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from clusterdns.k8s.controller import POD_FIELD_SELECTOR, Controller
from clusterdns.k8s.objects import Kind, Object, Service
from clusterdns.k8s.reflector import Backoff, BackoffPolicy
from clusterdns.k8s.source import Forbidden, Gone, ListPage, Unavailable
from clusterdns.k8s.store import Store

from .scripted import Changes, ScriptedSource, Stream, bookmark, error410, ev, pod, service

FAST = BackoffPolicy(initial_s=0.01, max_s=0.05)
LOGGER = "clusterdns.plugins.kubernetes"
FORBIDDEN_MSG = (
    'endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:kube-system:coredns"'
    ' cannot list resource "endpointslices" in API group "discovery.k8s.io" at the cluster scope'
)


@dataclass
class Harness:
    src: ScriptedSource
    store: Store
    ctrl: Controller
    changes: Changes


@asynccontextmanager
async def running(
    src: ScriptedSource,
    kinds: Iterable[Kind],
    *,
    label_selector: str | None = None,
    namespace_label_selector: str | None = None,
) -> AsyncIterator[Harness]:
    loop = asyncio.get_running_loop()
    store = Store()
    kinds = list(kinds)
    store.expect(kinds)
    ctrl = Controller(
        src,
        store,
        loop,
        kinds,
        label_selector=label_selector,
        namespace_label_selector=namespace_label_selector,
        backoff=FAST,
    )
    changes = Changes(store, ctrl)
    ctrl.start()
    try:
        yield Harness(src, store, ctrl, changes)
    finally:
        ctrl.stop()
        assert await asyncio.to_thread(ctrl.join, 10)


async def wait_calls(src: ScriptedSource, op: str, n: int, kind: Kind | None = None) -> None:
    await asyncio.to_thread(src.wait_calls, op, n, kind)


def watch_rvs(src: ScriptedSource, kind: Kind = Kind.SERVICE) -> list[str | None]:
    return [c.rv for c in src.calls_of("watch", kind)]


async def test_list_then_watch_events_applied() -> None:
    src = ScriptedSource()
    src.add_list(Kind.SERVICE, ListPage([service("a", "web", rv="5")], "10"))
    src.add_watch(
        Kind.SERVICE,
        Stream(
            [
                ev("ADDED", service("a", "db", "10.0.0.2", rv="11")),
                ev("MODIFIED", service("a", "web", "10.0.0.9", rv="12")),
                ev("DELETED", service("a", "db", "10.0.0.2", rv="13")),
            ],
            block=False,
        ),
    )
    async with running(src, [Kind.SERVICE]) as h:
        await h.changes.until(lambda: h.ctrl.synced and h.store.synced)
        await wait_calls(src, "watch", 2)
        await h.changes.until(lambda: ("a", "db") not in h.store.services)
        assert h.store.services[("a", "web")].cluster_ips == ("10.0.0.9",)
        assert watch_rvs(src)[:2] == ["10", "13"]
        counts = h.store.events.counts
        assert counts[("services", "ADDED")] == 1
        assert counts[("services", "MODIFIED")] == 1
        assert counts[("services", "DELETED")] == 1
        assert counts[("services", "RELIST")] == 1
        assert len(src.calls_of("list")) == 1


async def test_changes_reach_the_sink_on_the_loop_thread() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    class Recording(Store):
        def replace(self, kind: Kind, objects: Iterable[Object]) -> None:
            seen.append(threading.get_ident())
            super().replace(kind, objects)

        def apply(self, kind: Kind, etype: str, obj: Object) -> None:
            seen.append(threading.get_ident())
            super().apply(kind, etype, obj)

    src = ScriptedSource()
    src.add_list(Kind.SERVICE, ListPage([], "1"))
    src.add_watch(Kind.SERVICE, Stream([ev("ADDED", service("a", "web", rv="2"))]))
    store = Recording()
    ctrl = Controller(src, store, asyncio.get_running_loop(), [Kind.SERVICE], backoff=FAST)
    changes = Changes(store, ctrl)
    ctrl.start()
    try:
        await changes.until(lambda: ("a", "web") in store.services)
    finally:
        ctrl.stop()
        await asyncio.to_thread(ctrl.join, 10)
    assert seen and set(seen) == {loop_thread}


async def test_bookmark_moves_the_resource_version() -> None:
    src = ScriptedSource()
    src.add_list(Kind.SERVICE, ListPage([], "10"))
    src.add_watch(
        Kind.SERVICE,
        Stream([bookmark("20")], block=False),
        Stream([ev("ADDED", service("a", "web", rv="21")), bookmark("30")], block=False),
    )
    async with running(src, [Kind.SERVICE]) as h:
        await wait_calls(src, "watch", 3)
        assert watch_rvs(src)[:3] == ["10", "20", "30"]
        assert h.ctrl.reflectors[Kind.SERVICE].resource_version == "30"
        await h.changes.until(lambda: ("a", "web") in h.store.services)


@pytest.mark.parametrize("variant", ["error-event", "exception"])
async def test_gone_relists_and_notices_deletes(variant: str) -> None:
    src = ScriptedSource()
    src.add_list(
        Kind.SERVICE,
        ListPage([service("a", "web", rv="3"), service("a", "db", "10.0.0.2", rv="4")], "10"),
        ListPage([service("a", "web", rv="3")], "20"),
    )
    if variant == "error-event":
        src.add_watch(Kind.SERVICE, Stream([error410()]))
    else:
        src.add_watch(Kind.SERVICE, Gone("too old resource version: 10 (15)"))
    async with running(src, [Kind.SERVICE]) as h:
        await wait_calls(src, "watch", 2)
        await h.changes.until(lambda: ("a", "db") not in h.store.services)
        assert ("a", "web") in h.store.services
        assert watch_rvs(src)[:2] == ["10", "20"]
        assert [c.continue_token for c in src.calls_of("list")] == [None, None]
        assert h.store.events.counts[("services", "RELIST")] == 2


async def test_failures_back_off_and_rewatch_from_the_kept_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    src = ScriptedSource()
    src.add_list(Kind.SERVICE, ListPage([service("a", "web", rv="5")], "10"))
    src.add_watch(
        Kind.SERVICE,
        Stream([ev("ADDED", service("a", "db", rv="11")), Unavailable("connection reset")]),
        Unavailable("list services: Connection refused"),
        Unavailable("list services: Connection refused"),
        Stream([ev("ADDED", service("a", "api", rv="12"))]),
    )
    async with running(src, [Kind.SERVICE]) as h:
        await h.changes.until(lambda: ("a", "api") in h.store.services)
        assert watch_rvs(src)[:4] == ["10", "11", "11", "11"]
        assert len(src.calls_of("list")) == 1
        await h.changes.until(lambda: h.ctrl.status().connected)
        assert h.store.events.counts[("services", "ADDED")] == 2
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "WARNING",
        "scripted source unreachable (connection reset); keep answering from the last known state",
    ) in messages
    assert ("INFO", "scripted source reachable again") in messages


async def test_forbidden_is_logged_and_keeps_unsynced(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    forbidden = Forbidden("endpointslices.discovery.k8s.io", "list", FORBIDDEN_MSG)
    src = ScriptedSource()
    src.add_list(Kind.SERVICE, ListPage([service("a", "web")], "10"))
    src.add_list(Kind.ENDPOINTSLICE, forbidden, forbidden)
    async with running(src, [Kind.SERVICE, Kind.ENDPOINTSLICE]) as h:
        await wait_calls(src, "list", 3, Kind.ENDPOINTSLICE)  # the third one waits for a script
        await h.changes.until(lambda: bool(h.ctrl.status().forbidden))
        status = h.ctrl.status()
        assert status.forbidden == ("endpointslices.discovery.k8s.io",)
        assert not status.synced and not h.ctrl.synced and not h.store.synced
        assert Kind.SERVICE in status.listed
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and errors[0].name == LOGGER
        assert "Failed to list *v1.EndpointSlice: " + FORBIDDEN_MSG in errors[0].getMessage()
        # Permission granted: the next attempt lists and the controller syncs.
        src.add_list(Kind.ENDPOINTSLICE, ListPage([], "11"))
        assert await h.ctrl.wait_synced(10)
        assert h.ctrl.status().forbidden == ()


async def test_unconvertible_updates_delete_known_objects() -> None:
    src = ScriptedSource()
    src.add_list(
        Kind.POD,
        ListPage(
            [pod("a", "p1", "10.244.0.1"), pod("a", "p2", None), pod("a", "p3", "10.244.0.3")], "10"
        ),
    )
    src.add_watch(
        Kind.POD,
        Stream(
            [
                ev("MODIFIED", pod("a", "p1", "10.244.0.1", phase="Succeeded", rv="11")),
                ev("MODIFIED", pod("a", "p2", "10.244.0.2", rv="12")),
                ev("DELETED", pod("a", "p3", "10.244.0.3", phase="Failed", rv="13")),
                ev("DELETED", pod("a", "never-seen", None, rv="14")),
                ev("ADDED", pod("a", "p4", None, rv="15")),
            ],
            block=False,
        ),
    )
    async with running(src, [Kind.POD]) as h:
        await wait_calls(src, "watch", 2, Kind.POD)
        assert watch_rvs(src, Kind.POD)[:2] == ["10", "15"]
        await h.changes.until(lambda: set(h.store.pods) == {("a", "p2")})
        counts = h.store.events.counts
        assert counts[("pods", "DELETED")] == 2  # p1 left its phase, p3 deleted; nothing else
        assert h.store.pods[("a", "p2")].ip == "10.244.0.2"
        assert src.calls_of("list", Kind.POD)[0].field_selector == POD_FIELD_SELECTOR


async def test_paged_list_restarts_after_expired_continue() -> None:
    src = ScriptedSource()
    src.add_list(
        Kind.SERVICE,
        ListPage([service("a", "s1")], "10", "tok1"),
        Gone("The provided continue parameter is too old"),
        ListPage([service("a", "s1")], "11", "tok2"),
        ListPage([service("a", "s2", "10.0.0.2")], "11", None),
    )
    async with running(src, [Kind.SERVICE]) as h:
        assert await h.ctrl.wait_synced(10)
        assert set(h.store.services) == {("a", "s1"), ("a", "s2")}
        lists = src.calls_of("list")
        assert [c.continue_token for c in lists] == [None, "tok1", None, "tok2"]
        assert {c.limit for c in lists} == {500}
        await wait_calls(src, "watch", 1)
        assert watch_rvs(src)[0] == "11"


async def test_selectors_per_kind() -> None:
    src = ScriptedSource()
    kinds = [Kind.SERVICE, Kind.ENDPOINTSLICE, Kind.NAMESPACE, Kind.POD]
    for kind in kinds:
        src.add_list(kind, ListPage([], "1"))
    async with running(
        src, kinds, label_selector="env=prod", namespace_label_selector="team in (a,b)"
    ) as h:
        assert await h.ctrl.wait_synced(10)
        await wait_calls(src, "watch", 4)
    by_kind = {c.kind: c for c in src.calls_of("list")}
    assert by_kind[Kind.SERVICE].label_selector == "env=prod"
    assert by_kind[Kind.ENDPOINTSLICE].label_selector == "env=prod"
    assert by_kind[Kind.POD].label_selector == "env=prod"
    assert by_kind[Kind.NAMESPACE].label_selector == "team in (a,b)"
    assert by_kind[Kind.POD].field_selector == POD_FIELD_SELECTOR
    assert {by_kind[k].field_selector for k in kinds if k is not Kind.POD} == {None}
    watches = {c.kind: c for c in src.calls_of("watch")}
    assert watches[Kind.POD].field_selector == POD_FIELD_SELECTOR
    assert watches[Kind.SERVICE].label_selector == "env=prod"


async def test_wait_synced_logs_while_waiting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    src = ScriptedSource()  # the list blocks until scripted
    async with running(src, [Kind.SERVICE]) as h:
        assert not await h.ctrl.wait_synced(1.2)
        waiting = [
            r
            for r in caplog.records
            if r.getMessage() == "waiting for Kubernetes API before starting server"
        ]
        assert len(waiting) >= 2 and all(r.levelno == logging.INFO for r in waiting)
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage() for r in warned] == ["starting server with unsynced Kubernetes API"]
        src.add_list(Kind.SERVICE, ListPage([service("a", "web")], "3"))
        assert await h.ctrl.wait_synced(10)
        assert ("a", "web") in h.store.services


async def test_stop_ends_a_blocked_watch_promptly() -> None:
    src = ScriptedSource()
    src.add_list(Kind.SERVICE, ListPage([], "1"))
    async with running(src, [Kind.SERVICE]) as h:
        await wait_calls(src, "watch", 1)
        h.ctrl.stop()
        assert await asyncio.to_thread(h.ctrl.join, 5)


async def test_nothing_reaches_the_sink_after_stop() -> None:
    src = ScriptedSource()
    src.add_list(Kind.SERVICE, ListPage([], "1"))
    async with running(src, [Kind.SERVICE]) as h:
        await wait_calls(src, "watch", 1)
        h.ctrl.stop()
        # A late event posted by the thread would be dropped on the loop side as well.
        h.ctrl.reflectors[Kind.SERVICE]._on_loop(
            h.store.apply, (Kind.SERVICE, "ADDED", Service("a", "late", "ClusterIP", (), "", ()))
        )
        assert ("a", "late") not in h.store.services


def test_backoff_doubles_with_jitter_and_caps() -> None:
    backoff = Backoff(BackoffPolicy(), random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    bases = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= delay <= min(30.0, base * 1.2)
    backoff.reset()
    assert 0.4 <= backoff.next_delay() <= 0.6
