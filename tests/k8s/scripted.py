"""A scripted `ListWatch` (no network) and helpers to await store/controller states.

Lists and watches pop their answers from per-kind queues; every call is recorded with the
resourceVersion or continue token it carried. An exhausted watch script blocks until the stream
is closed (as an idle watch would), so tests wait on states, never on time.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterdns.k8s.controller import Controller
from clusterdns.k8s.objects import Kind
from clusterdns.k8s.source import ListPage, SourceError, WatchEvent
from clusterdns.k8s.store import Store

JSON = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One recorded call."""

    op: str  # list or watch
    kind: Kind
    rv: str | None = None
    continue_token: str | None = None
    limit: int | None = None
    label_selector: str | None = None
    field_selector: str | None = None


@dataclass(frozen=True)
class Stream:
    """A scripted watch: its events (an exception item is raised in turn), then end or block."""

    events: Sequence[WatchEvent | SourceError] = ()
    block: bool = True
    """After the events, block until closed (True) or end the stream (False)."""


Calls = list[Call]
ListStep = ListPage | SourceError
WatchStep = Stream | SourceError


@dataclass
class ScriptedSource:
    """A ListWatch replaying scripted pages, events and failures."""

    name: str = "scripted source"
    lists: dict[Kind, deque[ListStep]] = field(default_factory=dict)
    watches: dict[Kind, deque[WatchStep]] = field(default_factory=dict)
    calls: Calls = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add_list(self, kind: Kind, *steps: ListStep) -> None:
        """Queue answers for the next list calls of `kind`."""
        with self.cond:
            self.lists.setdefault(kind, deque()).extend(steps)
            self.cond.notify_all()

    def add_watch(self, kind: Kind, *steps: WatchStep) -> None:
        """Queue answers for the next watch calls of `kind`."""
        with self.cond:
            self.watches.setdefault(kind, deque()).extend(steps)
            self.cond.notify_all()

    def list(
        self,
        kind: Kind,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListPage:
        with self.cond:
            self.calls.append(
                Call("list", kind, None, continue_token, limit, label_selector, field_selector)
            )
            self.cond.notify_all()
            # An unscripted list waits for a script (like an API server that never answers).
            self.cond.wait_for(lambda: bool(self.lists.get(kind)), timeout=30)
            step = self.lists[kind].popleft()
        if isinstance(step, SourceError):
            raise step
        return step

    def watch(
        self,
        kind: Kind,
        *,
        resource_version: str,
        timeout_s: int,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ScriptedStream:
        with self.cond:
            self.calls.append(
                Call("watch", kind, resource_version, None, None, label_selector, field_selector)
            )
            self.cond.notify_all()
            queue = self.watches.get(kind)
            step: WatchStep = queue.popleft() if queue else Stream()
        if isinstance(step, SourceError):
            raise step
        return ScriptedStream(step)

    def calls_of(self, op: str, kind: Kind | None = None) -> Calls:
        """Recorded calls of one operation."""
        with self.cond:
            return [c for c in self.calls if c.op == op and (kind is None or c.kind is kind)]

    def wait_calls(self, op: str, n: int, kind: Kind | None = None, timeout_s: float = 10) -> None:
        """Block until at least `n` calls of `op` were made."""
        with self.cond:
            ok = self.cond.wait_for(
                lambda: sum(1 for c in self.calls if c.op == op and kind in (None, c.kind)) >= n,
                timeout_s,
            )
        assert ok, f"expected {n} {op} calls, got {self.calls}"


class ScriptedStream:
    """The stream of one scripted watch."""

    def __init__(self, step: Stream) -> None:
        self.step = step
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[WatchEvent]:
        for item in self.step.events:
            if self.closed.is_set():
                return
            if isinstance(item, SourceError):
                raise item
            yield item
        if self.step.block:
            self.closed.wait(30)

    def close(self) -> None:
        self.closed.set()


# -- building events -------------------------------------------------------------------------------
def service(ns: str, name: str, ip: str = "10.0.0.1", rv: str = "1", **spec: Any) -> JSON:
    """A Service as the API sends it."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name, "resourceVersion": rv},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP", **spec},
    }


def pod(ns: str, name: str, ip: str | None, phase: str = "Running", rv: str = "1") -> JSON:
    """A Pod as the API sends it."""
    status: JSON = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "resourceVersion": rv},
        "status": status,
    }


def ev(etype: str, obj: JSON) -> WatchEvent:
    """A watch event."""
    return WatchEvent(etype, obj)


def bookmark(rv: str) -> WatchEvent:
    """A BOOKMARK event at `rv`."""
    return WatchEvent("BOOKMARK", {"kind": "Service", "metadata": {"resourceVersion": rv}})


def error410(message: str = "too old resource version: 1 (5)") -> WatchEvent:
    """An ERROR event carrying a 410 Status."""
    return WatchEvent(
        "ERROR",
        {
            "kind": "Status",
            "status": "Failure",
            "reason": "Expired",
            "code": 410,
            "message": message,
        },
    )


# -- awaiting states -------------------------------------------------------------------------------
class Changes:
    """Wake on store and controller changes; `until` awaits a predicate with a timeout."""

    def __init__(self, store: Store, controller: Controller | None = None) -> None:
        self._event = asyncio.Event()
        store.listeners.append(self._event.set)
        if controller is not None:
            controller.listeners.append(self._event.set)

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Return once `predicate()` holds; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._event.clear()
                await self._event.wait()
