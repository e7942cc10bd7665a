"""A Kubernetes API server test double that speaks the real list/watch wire protocol on loopback.

Serves Services, EndpointSlices, Namespaces and Pods at their real paths over HTTP/1.1:

- list: `limit`/`continue` paging over a consistent snapshot (expired tokens get 410 with a
  Status body), `labelSelector` (=, ==, !=, exists, !exists) and `fieldSelector` (=, !=);
- watch: `watch=1&resourceVersion=N` streams chunked, newline-delimited JSON events from an event
  history; a resourceVersion older than the history gets an ERROR event with a 410 Status (or an
  HTTP 410 with `gone_as_http`); `allowWatchBookmarks` enables BOOKMARK events; `timeoutSeconds`
  ends the stream cleanly; objects leaving/entering a selector arrive as DELETED/ADDED.

Control hooks for tests (thread-safe): create/update/delete objects, bookmarks, drop open watches
(optionally in the middle of an event line), fail the next requests with a status, forbid a
resource (403 with the API's message), go down (refuse connections) and come back, compact the
history, expire continue tokens. Every request is recorded; `wait_for` blocks on a condition.

Run as a separate process (`python -m tests.k8s.fakeapi --services 10000`, see `main`) it serves
a synthetic cluster (`synthetic_cluster`) and/or YAML files, prints one JSON line with its
addresses once listening, and takes changes on a second loopback port (`ControlServer`): POST
`/create` (an object), `/delete` (kind, namespace, name), `/down`, `/up`, `/bookmark`,
`/drop_watches`, `/compact`, `/forbid` and `/allow` (resource), `/fail_next`; GET `/status`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import ipaddress
import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

JSON = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """One served resource."""

    name: str
    path: str
    kind: str
    api_version: str
    group: str = ""
    namespaced: bool = True

    @property
    def qualified(self) -> str:
        """`endpointslices.discovery.k8s.io`, or `services` for the core group."""
        return f"{self.name}.{self.group}" if self.group else self.name


RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in (
        Resource("services", "/api/v1/services", "Service", "v1"),
        Resource(
            "endpointslices",
            "/apis/discovery.k8s.io/v1/endpointslices",
            "EndpointSlice",
            "discovery.k8s.io/v1",
            group="discovery.k8s.io",
        ),
        Resource("namespaces", "/api/v1/namespaces", "Namespace", "v1", namespaced=False),
        Resource("pods", "/api/v1/pods", "Pod", "v1"),
    )
}
BY_PATH = {r.path: r for r in RESOURCES.values()}
BY_KIND = {r.kind: r for r in RESOURCES.values()}

SERVICE_ACCOUNT = "system:serviceaccount:kube-system:coredns"


@dataclass(frozen=True)
class Request:
    """One recorded request."""

    resource: str
    verb: str  # list or watch
    params: dict[str, str]

    @property
    def rv(self) -> str | None:
        """The resourceVersion parameter."""
        return self.params.get("resourceVersion")


@dataclass
class _Event:
    rv: int
    resource: str
    type: str
    obj: JSON
    old: JSON | None


@dataclass
class _Failure:
    status: int
    message: str | None
    resource: str | None
    verb: str | None


@dataclass
class _ListSnapshot:
    items: list[JSON]
    rv: int
    offset: int


@dataclass
class _State:
    rv: int = 1
    objects: dict[str, dict[tuple[str, str], JSON]] = field(
        default_factory=lambda: {name: {} for name in RESOURCES}
    )
    history: list[_Event] = field(default_factory=list)
    compacted_rv: int = 0
    bookmark_gen: int = 0
    drop_gen: int = 0
    drop_midline: bool = False
    continues: dict[str, _ListSnapshot] = field(default_factory=dict)
    failures: list[_Failure] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    open_watches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESOURCES, 0))
    sent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESOURCES, 0))
    closing: bool = False


class FakeApi:
    """The API server double; `start()` binds 127.0.0.1 on a free port (kept across down/up)."""

    def __init__(
        self,
        *,
        split_lines: bool = False,
        history_limit: int | None = None,
        default_watch_timeout_s: float = 3600,
    ) -> None:
        self.split_lines = split_lines
        """Write each event line in two chunks, split in the middle of the JSON."""
        self.history_limit = history_limit
        """Keep only this many events: watches from an older resourceVersion get 410."""
        self.gone_as_http = False
        """Answer a too-old watch resourceVersion with HTTP 410 instead of an ERROR event."""
        self.default_watch_timeout_s = default_watch_timeout_s
        self.cond = threading.Condition()
        self.state = _State()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._continue_seq = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeApi:
        """Bind and serve in a thread; returns self."""
        with self.cond:
            self.state.closing = False
        handler = _make_handler(self)
        server = _Server(("127.0.0.1", self.port), handler)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), daemon=True, name="fakeapi"
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening (connections are refused) and cut every open connection."""
        server, self._server = self._server, None
        with self.cond:
            self.state.closing = True
            self.state.drop_midline = False
            self.state.drop_gen += 1
            self.cond.notify_all()
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def up(self) -> None:
        """Listen again on the same port."""
        self.start()

    stop = down

    # -- objects -----------------------------------------------------------------------------------
    def _resource_of(self, obj: JSON) -> Resource:
        return BY_KIND[obj["kind"]]

    @staticmethod
    def _key(res: Resource, obj: JSON) -> tuple[str, str]:
        meta = obj["metadata"]
        return (meta.get("namespace", "") if res.namespaced else "", meta["name"])

    def _record(self, res: Resource, etype: str, obj: JSON, old: JSON | None) -> JSON:
        """Bump the RV, stamp the object, append to history (caller holds the lock)."""
        st = self.state
        st.rv += 1
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(st.rv)
        meta.setdefault("uid", f"uid-{res.name}-{meta['name']}-{st.rv}")
        st.history.append(_Event(st.rv, res.name, etype, obj, old))
        if self.history_limit is not None and len(st.history) > self.history_limit:
            del st.history[: len(st.history) - self.history_limit]
            st.compacted_rv = st.history[0].rv - 1
        self.cond.notify_all()
        return obj

    def create(self, obj: JSON) -> JSON:
        """Create (or replace) an object; returns it with its resourceVersion."""
        res = self._resource_of(obj)
        with self.cond:
            table = self.state.objects[res.name]
            key = self._key(res, obj)
            old = table.get(key)
            new = self._record(res, "MODIFIED" if old else "ADDED", obj, old)
            table[key] = new
            return new

    update = create

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object; watchers get DELETED with its last state."""
        res = BY_KIND[kind]
        with self.cond:
            table = self.state.objects[res.name]
            old = table.pop((namespace if res.namespaced else "", name))
            self._record(res, "DELETED", old, old)

    def load(self, objs: Iterable[JSON]) -> None:
        """Add objects in bulk without watch events (as if they existed before any watch)."""
        with self.cond:
            for obj in objs:
                res = self._resource_of(obj)
                self.state.rv += 1
                obj = copy.deepcopy(obj)
                obj["apiVersion"], obj["kind"] = res.api_version, res.kind
                obj["metadata"]["resourceVersion"] = str(self.state.rv)
                self.state.objects[res.name][self._key(res, obj)] = obj
            self.state.compacted_rv = self.state.rv
            self.cond.notify_all()

    @property
    def rv(self) -> int:
        """The current global resourceVersion."""
        with self.cond:
            return self.state.rv

    # -- faults and signals ------------------------------------------------------------------------
    def bookmark(self) -> int:
        """Send a BOOKMARK at the current resourceVersion to every open watch; returns that RV."""
        with self.cond:
            self.state.bookmark_gen += 1
            self.cond.notify_all()
            return self.state.rv

    def drop_watches(self, *, midline: bool = False) -> None:
        """Cut every open watch connection (after half an event line when `midline`)."""
        with self.cond:
            self.state.drop_midline = midline
            self.state.drop_gen += 1
            self.cond.notify_all()

    def fail_next(
        self,
        n: int,
        status: int,
        *,
        resource: str | None = None,
        verb: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `n` matching requests with `status` and a Status body."""
        with self.cond:
            self.state.failures.extend(_Failure(status, message, resource, verb) for _ in range(n))

    def forbid(self, resource: str) -> None:
        """Answer every request for `resource` with 403 until `allow`."""
        with self.cond:
            self.state.forbidden.add(resource)

    def allow(self, resource: str) -> None:
        """Undo `forbid`."""
        with self.cond:
            self.state.forbidden.discard(resource)

    def compact(self) -> None:
        """Forget the event history: watches from any older resourceVersion get 410."""
        with self.cond:
            self.state.history.clear()
            self.state.compacted_rv = self.state.rv

    def expire_continue_tokens(self) -> None:
        """Make every continue token handed out so far invalid (410 on use)."""
        with self.cond:
            self.state.continues.clear()

    # -- observation -------------------------------------------------------------------------------
    def requests(self, resource: str | None = None, verb: str | None = None) -> list[Request]:
        """Recorded requests, optionally filtered."""
        with self.cond:
            return [
                r
                for r in self.state.requests
                if (resource is None or r.resource == resource) and (verb is None or r.verb == verb)
            ]

    def open_watches(self, resource: str) -> int:
        """How many watches of `resource` are streaming now."""
        with self.cond:
            return self.state.open_watches[resource]

    def sent(self, resource: str) -> int:
        """How many watch events (bookmarks included) were written for `resource` so far."""
        with self.cond:
            return self.state.sent[resource]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Block until `predicate()` (evaluated under the lock) holds; AssertionError on timeout."""
        with self.cond:
            if not self.cond.wait_for(predicate, timeout_s):
                raise AssertionError("fake API: condition not reached in time")

    # -- request handling (handler threads) --------------------------------------------------------
    def _take_failure(self, res: Resource, verb: str) -> _Failure | None:
        st = self.state
        if res.name in st.forbidden:
            return _Failure(403, None, res.name, verb)
        for i, f in enumerate(st.failures):
            if (f.resource in (None, res.name)) and (f.verb in (None, verb)):
                return st.failures.pop(i)
        return None

    def _list(self, res: Resource, params: dict[str, str]) -> tuple[int, JSON]:
        st = self.state
        limit = int(params.get("limit") or 0)
        token = params.get("continue")
        if token:
            snap = st.continues.pop(token, None)
            if snap is None:
                return 410, status_body(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                )
        else:
            match = selector_matcher(params)
            items = sorted(
                (o for o in st.objects[res.name].values() if match(o)),
                key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
            )
            snap = _ListSnapshot(items, st.rv, 0)
        end = snap.offset + limit if limit > 0 else len(snap.items)
        page = snap.items[snap.offset : end]
        meta: JSON = {"resourceVersion": str(snap.rv)}
        if end < len(snap.items):
            self._continue_seq += 1
            next_token = f"c{self._continue_seq}-{snap.rv}-{end}"
            st.continues[next_token] = _ListSnapshot(snap.items, snap.rv, end)
            meta["continue"] = next_token
            meta["remainingItemCount"] = len(snap.items) - end
        # Stored objects are never changed in place (create/update store fresh copies) and the
        # page is serialised at once, so a shallow copy without kind/apiVersion is enough.
        items_out = [{k: v for k, v in obj.items() if k not in _LIST_DROP} for obj in page]
        body = {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": meta,
            "items": items_out,
        }
        return 200, body


_LIST_DROP = frozenset(("kind", "apiVersion"))
"""Fields the API server leaves out of each item of a list."""


def status_body(code: int, reason: str, message: str) -> JSON:
    """A `kind: Status` failure object as the API server sends it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def forbidden_message(res: Resource, verb: str) -> str:
    """The API server's RBAC denial text."""
    group = f' in API group "{res.group}"' if res.group else ' in API group ""'
    return (
        f'{res.qualified} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource '
        f'"{res.name}"{group} at the cluster scope'
    )


# -- selectors -------------------------------------------------------------------------------------
_REQ = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(!=|==|=)\s*([\w./-]*))?\s*$")


def _label_req(text: str) -> Callable[[dict[str, str]], bool]:
    m = _REQ.match(text)
    if m is None:
        raise ValueError(text)
    neg, key, op, value = m.groups()
    if op is None:
        return (lambda ls: key not in ls) if neg else (lambda ls: key in ls)
    if op == "!=":
        return lambda ls: ls.get(key) != value
    return lambda ls: ls.get(key) == value


def _field_req(text: str) -> Callable[[JSON], bool]:
    m = _REQ.match(text)
    if m is None or m.group(3) is None:
        raise ValueError(text)
    _, path, op, value = m.groups()

    def get(obj: JSON) -> str:
        node: Any = obj
        for step in path.split("."):
            node = node.get(step) if isinstance(node, dict) else None
        return "" if node is None else str(node)

    if op == "!=":
        return lambda o: get(o) != value
    return lambda o: get(o) == value


def selector_matcher(params: dict[str, str]) -> Callable[[JSON], bool]:
    """Match objects against the request's labelSelector and fieldSelector."""
    labels = [_label_req(p) for p in params.get("labelSelector", "").split(",") if p.strip()]
    fields = [_field_req(p) for p in params.get("fieldSelector", "").split(",") if p.strip()]

    def match(obj: JSON) -> bool:
        ls = obj.get("metadata", {}).get("labels") or {}
        return all(r(ls) for r in labels) and all(r(obj) for r in fields)

    return match


# -- HTTP ------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-response is normal here


def _make_handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # As the real API server (Go sets TCP_NODELAY): a small write, such as a watch event or
        # a body after its headers, must not wait for a delayed ACK (about 40 ms on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with api.cond:
                api._connections.add(self.connection)

        def finish(self) -> None:
            with api.cond:
                api._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            res = BY_PATH.get(url.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            if res is None:
                self._json(
                    404, status_body(404, "NotFound", f"the server could not find {url.path}")
                )
                return
            watch = params.get("watch") in ("1", "true", "True")
            verb = "watch" if watch else "list"
            with api.cond:
                api.state.requests.append(Request(res.name, verb, params))
                api.cond.notify_all()
                failure = api._take_failure(res, verb)
                listed = api._list(res, params) if failure is None and not watch else None
            if failure is not None:
                message = failure.message
                if failure.status == 403 and message is None:
                    message = forbidden_message(res, verb)
                reason = {403: "Forbidden", 410: "Expired", 500: "InternalError"}.get(
                    failure.status, "Failure"
                )
                self._json(failure.status, status_body(failure.status, reason, message or reason))
                return
            if listed is not None:
                self._json(*listed)
                return
            self._watch(res, params)

        def _json(self, code: int, body: JSON) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        def _lines(self, events: list[JSON]) -> None:
            for ev in events:
                line = json.dumps(ev).encode() + b"\n"
                if api.split_lines:
                    half = len(line) // 2
                    self._chunk(line[:half])
                    self._chunk(line[half:])
                else:
                    self._chunk(line)

        def _watch(self, res: Resource, params: dict[str, str]) -> None:
            st = api.state
            match = selector_matcher(params)
            bookmarks = params.get("allowWatchBookmarks") in ("1", "true", "True")
            timeout = float(params.get("timeoutSeconds") or api.default_watch_timeout_s)
            deadline = time.monotonic() + timeout
            raw_rv = params.get("resourceVersion") or ""
            with api.cond:
                pos = int(raw_rv) if raw_rv not in ("", "0") else st.rv
                too_old = pos < st.compacted_rv
                if too_old and api.gone_as_http:
                    gone: JSON | None = status_body(
                        410, "Expired", f"too old resource version: {pos} ({st.compacted_rv})"
                    )
                else:
                    gone = None
                drop_gen, bookmark_gen = st.drop_gen, st.bookmark_gen
                if not too_old:
                    st.open_watches[res.name] += 1
                    api.cond.notify_all()
            if gone is not None:
                self._json(410, gone)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if too_old:
                error = {
                    "type": "ERROR",
                    "object": status_body(
                        410, "Expired", f"too old resource version: {pos} ({st.compacted_rv})"
                    ),
                }
                self._lines([error])
                self._chunk(b"")
                return
            try:
                self._stream(res, match, bookmarks, deadline, pos, drop_gen, bookmark_gen)
            except OSError:
                self.close_connection = True
            finally:
                with api.cond:
                    st.open_watches[res.name] -= 1
                    api.cond.notify_all()

        def _stream(
            self,
            res: Resource,
            match: Callable[[JSON], bool],
            bookmarks: bool,
            deadline: float,
            pos: int,
            drop_gen: int,
            bookmark_gen: int,
        ) -> None:
            st = api.state
            while True:
                out: list[JSON] = []
                with api.cond:
                    while True:
                        pending = [e for e in st.history if e.rv > pos]
                        if (
                            pending
                            or st.drop_gen != drop_gen
                            or st.bookmark_gen != bookmark_gen
                            or time.monotonic() >= deadline
                        ):
                            break
                        api.cond.wait(max(0.0, deadline - time.monotonic()))
                    dropped, midline = st.drop_gen != drop_gen, st.drop_midline
                    if not dropped and pos < st.compacted_rv:
                        # Fell behind the history window: the API server ends such watches.
                        message = f"too old resource version: {pos} ({st.compacted_rv})"
                        gone = {"type": "ERROR", "object": status_body(410, "Expired", message)}
                        self._lines([gone])
                        self._chunk(b"")
                        return
                    for e in pending:
                        pos = e.rv
                        if e.resource != res.name:
                            continue
                        ev = _filtered(e, match)
                        if ev is not None:
                            out.append(ev)
                    if st.bookmark_gen != bookmark_gen:
                        bookmark_gen = st.bookmark_gen
                        if bookmarks:
                            out.append(
                                {
                                    "type": "BOOKMARK",
                                    "object": {
                                        "kind": res.kind,
                                        "apiVersion": res.api_version,
                                        "metadata": {"resourceVersion": str(st.rv)},
                                    },
                                }
                            )
                            pos = max(pos, st.rv)
                if dropped:
                    if midline:
                        self._chunk(b'{"type":"ADDED","object":{"kind":"Ser')
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._lines(out)
                if out:
                    with api.cond:
                        st.sent[res.name] += len(out)
                        api.cond.notify_all()
                if time.monotonic() >= deadline:
                    self._chunk(b"")
                    return

    return Handler


def _filtered(e: _Event, match: Callable[[JSON], bool]) -> JSON | None:
    """The event a selector-filtered watch sees, or None."""
    new_ok = match(e.obj)
    old_ok = e.old is not None and match(e.old)
    if e.type == "DELETED":
        return {"type": "DELETED", "object": e.obj} if old_ok else None
    if e.type == "ADDED":
        return {"type": "ADDED", "object": e.obj} if new_ok else None
    if old_ok and new_ok:
        return {"type": "MODIFIED", "object": e.obj}
    if new_ok:
        return {"type": "ADDED", "object": e.obj}
    if old_ok:
        return {"type": "DELETED", "object": e.obj}
    return None


# -- synthetic clusters ----------------------------------------------------------------------------
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
POD_CIDR = ipaddress.ip_network("10.128.0.0/9")


def synthetic_namespace(index: int) -> str:
    """The name of namespace `index` of a synthetic cluster."""
    return f"ns-{index:03d}"


def synthetic_service_key(index: int, namespaces: int) -> tuple[str, str]:
    """(namespace, name) of service `index` in a synthetic cluster of `namespaces` namespaces."""
    return synthetic_namespace(index % namespaces), f"svc-{index:05d}"


def synthetic_service_ip(index: int) -> str:
    """The cluster IP of service `index` (in 10.96.0.0/12, from 10.96.1.0 up)."""
    return str(SERVICE_CIDR.network_address + 256 + index)


def synthetic_service(index: int, namespaces: int, cluster_ip: str | None = None) -> JSON:
    """Service `index`: ClusterIP, port `http` 80/TCP; `cluster_ip` overrides its address."""
    ns, name = synthetic_service_key(index, namespaces)
    ip = cluster_ip or synthetic_service_ip(index)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name, "labels": {"app": name}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
    }


def synthetic_slice(index: int, namespaces: int, endpoints_per_slice: int) -> JSON:
    """The EndpointSlice of service `index`: `endpoints_per_slice` ready pods, port 8080."""
    ns, service = synthetic_service_key(index, namespaces)
    suffix = hashlib.sha1(service.encode()).hexdigest()[:5]
    base = POD_CIDR.network_address + 1 + index * endpoints_per_slice
    endpoints = [
        {
            "addresses": [str(base + j)],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": f"node-{(index + j) % 500:03d}",
            "targetRef": {
                "kind": "Pod",
                "namespace": ns,
                "name": f"{service}-7d4b9c-{j:05d}",
                "uid": f"pod-{index}-{j}",
            },
        }
        for j in range(endpoints_per_slice)
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns,
            "name": f"{service}-{suffix}",
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def synthetic_cluster(services: int, endpoints_per_slice: int, namespaces: int) -> list[JSON]:
    """Namespaces, `services` Services and one EndpointSlice per service (none without endpoints).

    Nothing at all (no namespaces either) when `services` is 0.

    Raises:
        ValueError: a size is out of range, or the cluster does not fit the service or pod CIDR.
    """
    if namespaces < 1 or services < 0 or endpoints_per_slice < 0:
        raise ValueError("need at least one namespace and no negative size")
    if 256 + services >= SERVICE_CIDR.num_addresses - 1:
        raise ValueError(f"{services} services do not fit {SERVICE_CIDR}")
    if 1 + services * endpoints_per_slice >= POD_CIDR.num_addresses - 1:
        raise ValueError(f"{services * endpoints_per_slice} endpoints do not fit {POD_CIDR}")
    if services == 0:
        return []
    out: list[JSON] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": synthetic_namespace(i)}}
        for i in range(namespaces)
    ]
    for i in range(services):
        out.append(synthetic_service(i, namespaces))
        if endpoints_per_slice:
            out.append(synthetic_slice(i, namespaces, endpoints_per_slice))
    return out


def yaml_objects(paths: Iterable[Path]) -> list[JSON]:
    """The served objects of Kubernetes YAML files: single objects, `kind: List` documents and
    typed lists (`kind: ServiceList`, whose items carry no kind)."""
    import yaml  # only the separate-process mode reads YAML

    out: list[JSON] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            kind = str(doc.get("kind", ""))
            if not kind.endswith("List"):
                items: list[Any] = [doc]
            else:
                items = [
                    {"kind": kind[: -len("List")], **item} if kind != "List" else item
                    for item in doc.get("items") or ()
                    if isinstance(item, dict)
                ]
            out.extend(o for o in items if isinstance(o, dict) and o.get("kind") in BY_KIND)
    return out


# -- control interface (separate-process mode) -----------------------------------------------------
class ControlServer:
    """HTTP on loopback that applies changes to a `FakeApi` (JSON bodies, JSON answers)."""

    def __init__(self, api: FakeApi, port: int = 0) -> None:
        self.api = api
        self._server = _Server(("127.0.0.1", port), _make_control_handler(api))
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True, name="fakeapi-control"
        )

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ControlServer:
        """Serve in a thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _control(api: FakeApi, path: str, body: JSON) -> tuple[int, JSON]:
    """Apply one control request; returns (HTTP status, answer)."""
    if path == "/create":
        obj = api.create(body)
        return 200, {"resourceVersion": obj["metadata"]["resourceVersion"]}
    if path == "/delete":
        try:
            api.delete(str(body["kind"]), str(body.get("namespace", "")), str(body["name"]))
        except KeyError as exc:
            return 404, {"error": f"no such object: {exc}"}
        return 200, {"rv": api.rv}
    if path == "/fail_next":
        api.fail_next(
            int(body.get("n", 1)),
            int(body["status"]),
            resource=body.get("resource"),
            verb=body.get("verb"),
            message=body.get("message"),
        )
        return 200, {}
    if path in ("/forbid", "/allow"):
        (api.forbid if path == "/forbid" else api.allow)(str(body["resource"]))
        return 200, {}
    simple: dict[str, Callable[[], object]] = {
        "/down": api.down,
        "/up": api.up,
        "/bookmark": api.bookmark,
        "/drop_watches": lambda: api.drop_watches(midline=bool(body.get("midline"))),
        "/compact": api.compact,
        "/expire_continue_tokens": api.expire_continue_tokens,
    }
    action = simple.get(path)
    if action is None:
        return 404, {"error": f"unknown control path {path}"}
    action()
    return 200, {"rv": api.rv}


def _status(api: FakeApi) -> JSON:
    with api.cond:
        st = api.state
        return {
            "rv": st.rv,
            "port": api.port,
            "up": not st.closing,
            "objects": {name: len(table) for name, table in st.objects.items()},
            "open_watches": dict(st.open_watches),
            "requests": len(st.requests),
        }


def _make_control_handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # As the real API server (Go sets TCP_NODELAY): a small write, such as a watch event or
        # a body after its headers, must not wait for a delayed ACK (about 40 ms on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/status":
                self._answer(200, _status(api))
            else:
                self._answer(404, {"error": "GET serves only /status"})

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(size) if size else b""
            try:
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                code, answer = _control(api, urlsplit(self.path).path, body)
            except (ValueError, KeyError, TypeError) as exc:
                code, answer = 400, {"error": f"{type(exc).__name__}: {exc}"}
            self._answer(code, answer)

        def _answer(self, code: int, body: JSON) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a synthetic cluster (and/or YAML files) until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.fakeapi", description=main.__doc__)
    parser.add_argument("--services", type=int, default=0, help="synthetic Services (default 0)")
    parser.add_argument(
        "--endpoints-per-slice",
        type=int,
        default=15,
        help="ready endpoints in each service's EndpointSlice (default 15)",
    )
    parser.add_argument("--namespaces", type=int, default=100, help="namespaces (default 100)")
    parser.add_argument(
        "--yaml", type=Path, action="append", default=[], help="also serve a YAML file's objects"
    )
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--control-port", type=int, default=0, help="control port (default: free)")
    parser.add_argument("--history-limit", type=int, default=None, help="watch events kept")
    args = parser.parse_args(argv)
    try:
        objects = synthetic_cluster(args.services, args.endpoints_per_slice, args.namespaces)
    except ValueError as exc:
        parser.error(str(exc))
    objects.extend(yaml_objects(args.yaml))
    api = FakeApi(history_limit=args.history_limit)
    api.port = args.port
    api.load(objects)
    count = len(objects)
    del objects
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    api.start()
    control = ControlServer(api, args.control_port).start()
    print(json.dumps({"api": api.url, "control": control.url, "objects": count}), flush=True)
    while not stop.wait(1.0):
        pass
    control.stop()
    api.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
