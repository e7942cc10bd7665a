"""List+watch sources: the `ListWatch` protocol and its implementation over the kubernetes client.

Owns the wire side of the watch cache: which generated client function serves each kind, the
raw JSON of list pages and watch streams (never the client's model objects, never
`kubernetes.watch.Watch`), read timeouts, connection release, and the mapping of failures to
typed errors (`Gone`, `Forbidden`, `Unavailable`). It does not convert objects (objects.py),
keep resourceVersions or retry (reflector.py), and never touches the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clusterdns.errors import WatchError
from clusterdns.k8s.objects import JSON, Kind

log = logging.getLogger("clusterdns.plugins.kubernetes")

ADDED: Final = "ADDED"
MODIFIED: Final = "MODIFIED"
DELETED: Final = "DELETED"
BOOKMARK: Final = "BOOKMARK"
ERROR: Final = "ERROR"

RESOURCE: Final[dict[Kind, str]] = {
    Kind.SERVICE: "services",
    Kind.ENDPOINTSLICE: "endpointslices.discovery.k8s.io",
    Kind.NAMESPACE: "namespaces",
    Kind.POD: "pods",
}
"""The API resource of each kind, as RBAC and the API's error messages name it."""

API_TYPE: Final[dict[Kind, str]] = {
    Kind.SERVICE: "*v1.Service",
    Kind.ENDPOINTSLICE: "*v1.EndpointSlice",
    Kind.NAMESPACE: "*v1.Namespace",
    Kind.POD: "*v1.Pod",
}
"""The object type of each kind as CoreDNS (client-go) names it in its log lines."""

_READ_SIZE: Final = 65536

HTTP_METHOD: Final = "GET"
"""Lists and watches are both GETs: the `verb`/`method` label of the client metrics."""
NO_RESPONSE: Final = "<error>"
"""The `code` of a request that got no HTTP response (client-go's value)."""


# -- errors ----------------------------------------------------------------------------------------
class SourceError(WatchError):
    """A list or watch request failed."""


class Gone(SourceError):
    """HTTP 410: the resourceVersion or continue token is too old; list again from scratch."""


class Forbidden(SourceError):
    """HTTP 403 (or 401): the credentials may not `verb` the `resource`; needs an operator."""

    def __init__(self, resource: str, verb: str, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.resource = resource
        self.verb = verb
        self.message = message
        self.status = status


class Unavailable(SourceError):
    """The source could not be reached or failed (refused, reset, timeout, 5xx, bad data)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def status_error(status: JSON, *, resource: str, verb: str) -> SourceError:
    """The typed error for a `kind: Status` object (an ERROR event's object or an error body)."""
    code = status.get("code")
    message = str(status.get("message") or status.get("reason") or "unknown error")
    if code == 410:
        return Gone(message)
    if code in (401, 403):
        return Forbidden(resource, verb, message, status=int(code))
    status_code = code if isinstance(code, int) else None
    return Unavailable(f"{verb} {resource}: {message}", status=status_code)


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a list: raw items, the list's resourceVersion, the token for the next page."""

    items: list[JSON]
    resource_version: str
    continue_token: str | None = None


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR, with the raw object."""

    type: str
    object: JSON


class WatchStream(Protocol):
    """An open watch: iterate for events; `close()` may be called from any thread."""

    def __iter__(self) -> Iterator[WatchEvent]:
        """Yield events until the watch ends; raise a SourceError on failure."""
        ...

    def close(self) -> None:
        """End the watch, waking a blocked iteration; idempotent and thread-safe."""
        ...


class ListWatch(Protocol):
    """Where a reflector lists and watches objects of one kind (the API server, YAML files)."""

    name: str
    """Human name of the source for log lines, e.g. `Kubernetes API`."""

    def list(
        self,
        kind: Kind,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListPage:
        """Fetch one page of objects of `kind`; raise a SourceError on failure."""
        ...

    def watch(
        self,
        kind: Kind,
        *,
        resource_version: str,
        timeout_s: int,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> WatchStream:
        """Open a watch from `resource_version`; raise a SourceError when it cannot be opened."""
        ...


# -- client metrics hooks --------------------------------------------------------------------------
class RequestObserver(Protocol):
    """Receives what client-go's `rest_client_*` metrics record about each API request.

    Called from reflector threads, concurrently: implementations must be thread-safe and cheap.
    `host` is the API server URL's `host[:port]`, as client-go labels it.
    """

    def result(self, code: str, method: str, host: str) -> None:
        """One request finished: `code` is the HTTP status as text, or `<error>` without one."""
        ...

    def latency(self, verb: str, host: str, seconds: float) -> None:
        """A list request took `seconds`, body included (watches are not observed)."""
        ...

    def rate_limiter(self, verb: str, host: str, seconds: float) -> None:
        """A list request waited `seconds` for the client-side rate limiter before it was sent."""
        ...


def url_host(url: str) -> str:
    """The `host[:port]` of a URL (`https://10.96.0.1:443` -> `10.96.0.1:443`)."""
    return urlsplit(url).netloc.rpartition("@")[2] or "none"


# -- the kubernetes-client implementation ----------------------------------------------------------
class KubeSource:
    """`ListWatch` over the official client: raw JSON, paged lists, streamed watches.

    Thread-safe: every reflector thread may call it concurrently (the client's urllib3 pool is).
    `observer` gets each request's outcome, as client-go reports it to its metrics: every list and
    watch request counts its status code; lists also observe their duration and a rate-limiter
    wait of 0 s (there is no client-side limiter); watches, which client-go neither throttles nor
    times, only count.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        name: str | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.api_client = api_client
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.name = name or f"Kubernetes API {api_client.configuration.host}"
        self.observer = observer
        self.host = url_host(str(api_client.configuration.host))
        core = client.CoreV1Api(api_client)
        discovery = client.DiscoveryV1Api(api_client)
        self._calls: dict[Kind, Callable[..., object]] = {
            Kind.SERVICE: core.list_service_for_all_namespaces,
            Kind.ENDPOINTSLICE: discovery.list_endpoint_slice_for_all_namespaces,
            Kind.NAMESPACE: core.list_namespace,
            Kind.POD: core.list_pod_for_all_namespaces,
        }

    def _request(self, kind: Kind, verb: str, **params: object) -> urllib3.BaseHTTPResponse:
        resource = RESOURCE[kind]
        timeout = (self.connect_timeout_s, self.read_timeout_s)
        try:
            resp = self._calls[kind](_preload_content=False, _request_timeout=timeout, **params)
        except ApiException as exc:
            status = exc.status if isinstance(exc.status, int) and exc.status > 0 else None
            self._result(str(status) if status else NO_RESPONSE)
            raise _api_error(exc, resource=resource, verb=verb) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._result(NO_RESPONSE)
            raise Unavailable(f"{verb} {resource}: {_describe(exc)}") from exc
        if not isinstance(resp, urllib3.BaseHTTPResponse):  # pragma: no cover - client contract
            self._result(NO_RESPONSE)
            raise Unavailable(f"{verb} {resource}: unexpected client response {type(resp)!r}")
        self._result(str(resp.status))
        return resp

    def _result(self, code: str) -> None:
        if self.observer is not None:
            self.observer.result(code, HTTP_METHOD, self.host)

    def list(
        self,
        kind: Kind,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListPage:
        """Fetch one page (`limit` items from `continue_token`) of every namespace's objects."""
        resource = RESOURCE[kind]
        if self.observer is not None:
            self.observer.rate_limiter(HTTP_METHOD, self.host, 0.0)
        start = time.monotonic()
        try:
            resp = self._request(
                kind,
                "list",
                limit=limit,
                _continue=continue_token,
                label_selector=label_selector,
                field_selector=field_selector,
            )
            try:
                body = resp.data
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise Unavailable(f"list {resource}: {_describe(exc)}") from exc
            finally:
                resp.release_conn()
        finally:
            if self.observer is not None:
                self.observer.latency(HTTP_METHOD, self.host, time.monotonic() - start)
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise Unavailable(f"list {resource}: undecodable JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise Unavailable(f"list {resource}: expected a JSON object, got {type(doc).__name__}")
        if doc.get("kind") == "Status":
            raise status_error(doc, resource=resource, verb="list")
        meta = doc.get("metadata") or {}
        items = doc.get("items") or []
        return ListPage(
            items=[item for item in items if isinstance(item, dict)],
            resource_version=str(meta.get("resourceVersion") or ""),
            continue_token=meta.get("continue") or None,
        )

    def watch(
        self,
        kind: Kind,
        *,
        resource_version: str,
        timeout_s: int,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> WatchStream:
        """Open a watch from `resource_version` that the server ends after `timeout_s`."""
        resp = self._request(
            kind,
            "watch",
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=resource_version,
            timeout_seconds=int(timeout_s),
            label_selector=label_selector,
            field_selector=field_selector,
        )
        return _HttpWatchStream(resp, resource=RESOURCE[kind])


class _HttpWatchStream:
    """Newline-delimited JSON events read from a streamed HTTP response."""

    def __init__(self, resp: urllib3.BaseHTTPResponse, *, resource: str) -> None:
        self._resp = resp
        self._resource = resource
        self._lock = threading.Lock()
        self._closed = False
        self._reading = False
        self._released = False
        self.end_reason = ""
        """Why the stream ended: `eof`, `closed`, or the connection error (for debug logs)."""

    def __iter__(self) -> Iterator[WatchEvent]:
        """Yield events; an ERROR event raises its typed error; a broken stream just ends."""
        buf = bytearray()
        try:
            while True:
                with self._lock:
                    if self._closed:
                        self.end_reason = "closed"
                        return
                    self._reading = True
                try:
                    chunk = self._resp.read1(_READ_SIZE)
                except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                    # A cut connection, a read timeout on a quiet watch or our own close():
                    # the reflector watches again from the last resourceVersion it saw.
                    self.end_reason = "closed" if self._closed else _describe(exc)
                    break
                finally:
                    with self._lock:
                        self._reading = False
                if not chunk:
                    self.end_reason = "closed" if self._closed else "eof"
                    break
                buf += chunk
                start = 0
                while (end := buf.find(b"\n", start)) >= 0:
                    line = bytes(buf[start:end])
                    start = end + 1
                    if line.strip():
                        yield self._event(line)
                del buf[:start]
            if buf.strip():
                log.debug("watch %s: dropped a partial event line", self._resource)
        finally:
            with self._lock:
                self._release()

    def _event(self, line: bytes) -> WatchEvent:
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise Unavailable(f"watch {self._resource}: undecodable event: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("object"), dict):
            raise Unavailable(f"watch {self._resource}: malformed event {line[:200]!r}")
        etype = str(doc.get("type") or "")
        obj: JSON = doc["object"]
        if etype == ERROR:
            raise status_error(obj, resource=self._resource, verb="watch")
        return WatchEvent(etype, obj)

    def close(self) -> None:
        """Stop the stream and free its connection; a read blocked in another thread wakes up."""
        with self._lock:
            self._closed = True
            if self._released:
                return
            if self._reading:
                # The reading thread wakes up and releases; without a socket it ends by itself.
                with contextlib.suppress(ValueError, RuntimeError, OSError):
                    self._resp.shutdown()
            else:
                self._release()

    def _release(self) -> None:
        """Free the connection (caller holds the lock); idempotent."""
        if self._released:
            return
        self._released = True
        if self.end_reason != "eof":
            self._resp.close()  # never put a half-read connection back into the pool
        self._resp.release_conn()


def _api_error(exc: ApiException, *, resource: str, verb: str) -> SourceError:
    status = exc.status if isinstance(exc.status, int) else 0
    body = exc.body if isinstance(exc.body, str) else ""
    doc: object = None
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        doc.setdefault("code", status)
        return status_error(doc, resource=resource, verb=verb)
    message = body.strip() or str(exc.reason or "").strip() or f"HTTP {status}"
    if status == 0:
        return Unavailable(f"{verb} {resource}: {message}")
    return status_error({"code": status, "message": message}, resource=resource, verb=verb)


def _describe(exc: BaseException) -> str:
    """A one-line description of a connection failure (urllib3 nests the real cause)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return _describe(reason)
    first = exc.args[0] if exc.args else None
    text = first if isinstance(first, str) else str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__
