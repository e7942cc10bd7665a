"""The in-memory cluster state DNS answers from, with the indexes lookups need.

Loop-thread only: reflectors hand events over with `loop.call_soon_threadsafe`, and every change
is applied in one synchronous call, so a query (also on the loop) never sees a half-applied
change. `serial` is the Unix time of the last change that can alter an answer (the SOA serial,
spec §6.11); `generation` moves on every change that alters stored data (fast-path invalidation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from clusterdns.k8s.objects import (
    EndpointAddress,
    EndpointSlice,
    Kind,
    Namespace,
    Object,
    Pod,
    Service,
    canonical_ip,
)

ChangeListener = Callable[[], None]
ProgrammingObserver = Callable[[str, float], None]
"""Called with (service_kind, seconds) for the DNS programming latency metric."""


@dataclass
class EventCounts:
    """Events applied, by kind and type (ADDED, MODIFIED, DELETED, RELIST)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, kind: Kind, etype: str, n: int = 1) -> None:
        """Count `n` events."""
        key = (kind.value, etype)
        self.counts[key] = self.counts.get(key, 0) + n


class Store:
    """Services, EndpointSlices, Namespaces and Pods, indexed for DNS lookups."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], EndpointSlice] = {}
        self.namespaces: dict[str, Namespace] = {}
        self.pods: dict[tuple[str, str], Pod] = {}
        self._slices_by_service: dict[tuple[str, str], dict[str, EndpointSlice]] = {}
        self._services_by_ip: dict[str, tuple[tuple[str, str], ...]] = {}
        self._slices_by_ip: dict[str, tuple[tuple[str, str], ...]] = {}
        self._pods_by_ip: dict[str, tuple[tuple[str, str], ...]] = {}
        self.serial = 0
        self.generation = 0
        self.required: set[Kind] = set()
        self.synced_kinds: set[Kind] = set()
        self.events = EventCounts()
        self.listeners: list[ChangeListener] = []
        self.on_programmed: ProgrammingObserver | None = None
        self.last_change_s = 0.0
        """Monotonic-ish wall time of the last applied change (for change-to-answer latency)."""

    # -- sync state ------------------------------------------------------------------------------
    def expect(self, kinds: Iterable[Kind]) -> None:
        """Declare which kinds must have listed before the store counts as synced."""
        self.required = set(kinds)

    @property
    def synced(self) -> bool:
        """Whether every required kind has completed its initial list."""
        return self.required <= self.synced_kinds

    # -- applying changes ------------------------------------------------------------------------
    def replace(self, kind: Kind, objects: Iterable[Object]) -> None:
        """Apply a full list of `kind`: objects missing from it are deleted (a relist)."""
        current = self._table(kind)
        incoming: dict[tuple[str, str], Object] = {}
        for obj in objects:
            if isinstance(obj, Pod) and obj.deleting:
                # A terminating pod is kept as last seen, and never added (spec §6.2).
                known = current.get(obj.key)
                if known is not None:
                    incoming[obj.key] = known
                continue
            incoming[obj.key] = obj
        changed = False
        for key in [k for k in current if k not in incoming]:
            changed |= self._delete(kind, key)
        for obj in incoming.values():
            changed |= self._put(kind, obj)
        self.events.add(kind, "RELIST")
        if kind not in self.synced_kinds or changed:
            self._touch(serial=changed or not self.serial)
        self.synced_kinds.add(kind)

    def apply(self, kind: Kind, etype: str, obj: Object) -> None:
        """Apply one watch event (ADDED, MODIFIED or DELETED); idempotent."""
        self.events.add(kind, etype)
        if etype == "DELETED":
            changed = self._delete(kind, obj.key)
            if changed:
                self._touch(serial=True)
            return
        old = self._table(kind).get(obj.key)
        if isinstance(obj, Pod) and obj.deleting:
            return  # a terminating pod stays as last seen until its delete event
        if not self._put(kind, obj):
            return
        self._touch(serial=_moves_serial(old, obj))
        if isinstance(obj, EndpointSlice) and obj.trigger_time is not None and self.on_programmed:
            service = self.services.get(obj.service_key)
            if service is not None:
                label = "headless_with_selector" if service.headless else "cluster_ip"
                self.on_programmed(label, max(0.0, self.clock() - obj.trigger_time))

    def _touch(self, *, serial: bool) -> None:
        self.generation += 1
        self.last_change_s = self.clock()
        if serial:
            self.serial = int(self.last_change_s)
        for listener in self.listeners:
            listener()

    def _table(self, kind: Kind) -> dict[tuple[str, str], Object]:
        if kind is Kind.SERVICE:
            return self.services  # type: ignore[return-value]
        if kind is Kind.ENDPOINTSLICE:
            return self.slices  # type: ignore[return-value]
        if kind is Kind.POD:
            return self.pods  # type: ignore[return-value]
        return {("", n): ns for n, ns in self.namespaces.items()}

    def _put(self, kind: Kind, obj: Object) -> bool:
        if isinstance(obj, Namespace):
            if obj.name in self.namespaces:
                return False
            self.namespaces[obj.name] = obj
            return True
        table = self._table(kind)
        old = table.get(obj.key)
        if old == obj:
            return False
        if old is not None:
            self._delete(kind, obj.key)
        if isinstance(obj, Service):
            self.services[obj.key] = obj
            for ip in obj.cluster_ips:
                if ip != "None":
                    _index_add(self._services_by_ip, ip, obj.key)
        elif isinstance(obj, EndpointSlice):
            self.slices[obj.key] = obj
            self._slices_by_service.setdefault(obj.service_key, {})[obj.name] = obj
            for ip in {a.ip for a in obj.addresses}:
                _index_add(self._slices_by_ip, ip, obj.key)
        elif isinstance(obj, Pod):
            self.pods[obj.key] = obj
            _index_add(self._pods_by_ip, obj.ip, obj.key)
        return True

    def _delete(self, kind: Kind, key: tuple[str, str]) -> bool:
        if kind is Kind.NAMESPACE:
            return self.namespaces.pop(key[1], None) is not None
        if kind is Kind.SERVICE:
            svc = self.services.pop(key, None)
            if svc is None:
                return False
            for ip in svc.cluster_ips:
                _index_remove(self._services_by_ip, ip, key)
            return True
        if kind is Kind.ENDPOINTSLICE:
            sl = self.slices.pop(key, None)
            if sl is None:
                return False
            group = self._slices_by_service.get(sl.service_key)
            if group is not None:
                group.pop(sl.name, None)
                if not group:
                    del self._slices_by_service[sl.service_key]
            for ip in {a.ip for a in sl.addresses}:
                _index_remove(self._slices_by_ip, ip, key)
            return True
        pod = self.pods.pop(key, None)
        if pod is None:
            return False
        _index_remove(self._pods_by_ip, pod.ip, key)
        return True

    # -- lookups ---------------------------------------------------------------------------------
    def service(self, namespace: str, name: str) -> Service | None:
        """The service `namespace/name` (names as stored: lower case)."""
        return self.services.get((namespace, name))

    def slices_of(self, namespace: str, service: str) -> Iterator[EndpointSlice]:
        """Every EndpointSlice of a service."""
        yield from self._slices_by_service.get((namespace, service), {}).values()

    def has_endpoints(self, namespace: str, service: str) -> bool:
        """Whether any slice of the service holds a ready address."""
        return any(s.addresses for s in self.slices_of(namespace, service))

    def has_namespace(self, name: str) -> bool:
        """Whether the namespace exists (in the watch)."""
        return name in self.namespaces

    def services_by_ip(self, ip: str) -> list[Service]:
        """Services holding `ip` as a cluster IP."""
        keys = self._services_by_ip.get(canonical_ip(ip), ())
        return [self.services[k] for k in keys if k in self.services]

    def endpoints_by_ip(self, ip: str) -> list[tuple[EndpointSlice, EndpointAddress]]:
        """Ready endpoint addresses equal to `ip`, with their slices."""
        ip = canonical_ip(ip)
        out: list[tuple[EndpointSlice, EndpointAddress]] = []
        for key in self._slices_by_ip.get(ip, ()):
            sl = self.slices.get(key)
            if sl is not None:
                out.extend((sl, a) for a in sl.addresses if a.ip == ip)
        return out

    def pod_has_ip(self, namespace: str, ip: str) -> bool:
        """Whether a live pod in `namespace` has `ip` as its primary IP."""
        return any(k[0] == namespace for k in self._pods_by_ip.get(canonical_ip(ip), ()))


def _moves_serial(old: Object | None, new: Object) -> bool:
    if old is None:
        return True
    if isinstance(old, Service) and isinstance(new, Service):
        return (old.external_name, old.ports, old.cluster_ips, old.type) != (
            new.external_name,
            new.ports,
            new.cluster_ips,
            new.type,
        )
    if isinstance(old, EndpointSlice) and isinstance(new, EndpointSlice):
        return old.dns_view() != new.dns_view()
    if isinstance(old, Pod) and isinstance(new, Pod):
        return old.ip != new.ip
    return old != new


def _index_add(
    index: dict[str, tuple[tuple[str, str], ...]], ip: str, key: tuple[str, str]
) -> None:
    keys = index.get(ip, ())
    if key not in keys:
        index[ip] = (*keys, key)


def _index_remove(
    index: dict[str, tuple[tuple[str, str], ...]], ip: str, key: tuple[str, str]
) -> None:
    keys = tuple(k for k in index.get(ip, ()) if k != key)
    if keys:
        index[ip] = keys
    else:
        index.pop(ip, None)
