"""The reflector: list + watch of one kind in a daemon thread, handing changes to the event loop.

Owns the resourceVersion bookkeeping (newest RV from every event and bookmark), paged lists,
relisting after 410 Gone, capped jittered backoff after any other failure, and the conversion of
raw JSON to slim objects (in the thread). It never touches the store or any loop state from its
thread: every change and every status update is handed to the loop with
`loop.call_soon_threadsafe`, where the `Sink` (the Store) applies it in one synchronous call.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from clusterdns.k8s.objects import JSON, Kind, Object, from_api
from clusterdns.k8s.source import (
    ADDED,
    API_TYPE,
    BOOKMARK,
    DELETED,
    ERROR,
    MODIFIED,
    RESOURCE,
    Forbidden,
    Gone,
    ListWatch,
    SourceError,
    Unavailable,
    WatchEvent,
    WatchStream,
    status_error,
)

log = logging.getLogger("clusterdns.plugins.kubernetes")

PAGE_SIZE: Final = 500
WATCH_TIMEOUT_S: Final = 300
MIN_WATCH_S: Final = 1.0
"""A watch that ends sooner than this without delivering anything counts as a failure (backoff)."""

Key = tuple[str, str]


class Sink(Protocol):
    """Where changes go, called on the loop thread only (the Store satisfies it)."""

    def replace(self, kind: Kind, objects: list[Object]) -> None:
        """Apply a full (re)list of `kind`."""
        ...

    def apply(self, kind: Kind, etype: str, obj: Object) -> None:
        """Apply one ADDED, MODIFIED or DELETED event."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """Capped exponential backoff with jitter between failed attempts."""

    initial_s: float = 0.5
    """First delay, seconds."""
    max_s: float = 30.0
    """Largest delay, seconds."""
    factor: float = 2.0
    """Growth per consecutive failure."""
    jitter: float = 0.2
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter] (then capped)."""


class Backoff:
    """The delays of one failure streak under a `BackoffPolicy`."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng or random.Random()
        self._failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; grows with each call until `reset()`."""
        p = self.policy
        base = min(p.max_s, p.initial_s * p.factor ** min(self._failures, 64))
        self._failures += 1
        return min(p.max_s, base * self._rng.uniform(1.0 - p.jitter, 1.0 + p.jitter))

    def reset(self) -> None:
        """Start a new streak (after a success)."""
        self._failures = 0


class Reflector:
    """List + watch of one kind, kept current in a daemon thread.

    Status attributes (`listed`, `connected`, `last_error`, `forbidden`) are written on the loop
    thread only, after the change they describe has been applied to the sink.
    """

    def __init__(
        self,
        kind: Kind,
        source: ListWatch,
        sink: Sink,
        loop: asyncio.AbstractEventLoop,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = PAGE_SIZE,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        on_change: Callable[[Reflector], None] | None = None,
    ) -> None:
        self.kind = kind
        self.source = source
        self.sink = sink
        self.loop = loop
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.watch_timeout_s = watch_timeout_s
        self.on_change = on_change
        self._backoff = Backoff(backoff or BackoffPolicy(), rng)
        # loop-thread state
        self.listed = False
        """Whether the first list has been applied to the sink."""
        self.connected = False
        """Whether the last request reached the source (False after a connection failure)."""
        self.last_error: str | None = None
        """The last failure, cleared by the next success."""
        self.forbidden: str | None = None
        """The API's message while list/watch is refused (RBAC), else None."""
        # watch-thread state
        self._rv: str | None = None
        self._known: dict[Key, Object] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._failing = False
        self._gone_streak = 0

    # -- control (any thread) --------------------------------------------------------------------
    @property
    def resource(self) -> str:
        """The API resource watched, as RBAC names it."""
        return RESOURCE[self.kind]

    @property
    def resource_version(self) -> str | None:
        """The newest resourceVersion seen (None until listed, and after a 410)."""
        return self._rv

    def start(self) -> None:
        """Start the watch thread; idempotent."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"clusterdns-watch-{self.kind.value}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end now; nothing more reaches the sink after this returns."""
        with self._lock:
            self._stop.set()
            stream = self._stream
        if stream is not None:
            stream.close()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the thread to end; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            delay = 0.0
            try:
                if self._rv is None and not self._list():
                    return
                self._watch()
            except Gone as exc:
                self._rv = None
                self._gone_streak += 1
                log.info("relisting %s: %s", self.resource, exc)
                if self._gone_streak > 1:
                    delay = self._backoff.next_delay()
            except Forbidden as exc:
                log.error(
                    "Failed to %s %s: %s (grant list and watch on %s)",
                    exc.verb,
                    API_TYPE[self.kind],
                    exc.message,
                    self.resource,
                )
                self._failing = True
                self._post_status(connected=True, error=exc.message, forbidden=exc.message)
                delay = self._backoff.next_delay()
            except _ShortWatch:
                delay = self._backoff.next_delay()
            except SourceError as exc:
                self._failed(str(exc))
                delay = self._backoff.next_delay()
            except _LoopClosed:
                return
            except Exception as exc:  # the reflector must survive anything; log it loudly
                log.exception("watch of %s failed unexpectedly", self.resource)
                self._failed(f"{type(exc).__name__}: {exc}", quiet=True)
                delay = self._backoff.next_delay()
            if delay > 0 and self._stop.wait(delay):
                return

    def _failed(self, message: str, *, quiet: bool = False) -> None:
        if not quiet:
            if self._failing:
                log.debug("%s: %s", self.source.name, message)
            else:
                log.warning("%s: %s", self.source.name, message)
        self._failing = True
        self._post_status(connected=False, error=message, forbidden=None)

    def _succeeded(self) -> None:
        if self._failing:
            log.info("%s: %s watch resumed", self.source.name, self.resource)
        self._failing = False
        self._post_status(connected=True, error=None, forbidden=None)

    def _progress(self) -> None:
        """Real progress was made: the next failure starts a fresh backoff streak."""
        self._backoff.reset()
        self._gone_streak = 0

    def _list(self) -> bool:
        """List every page and hand the result over; False when stopped meanwhile."""
        objects: list[Object] = []
        token: str | None = None
        pages = 0
        while True:
            page = self.source.list(
                self.kind,
                limit=self.page_size,
                continue_token=token,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
            )
            pages += 1
            for item in page.items:
                obj = from_api(self.kind, item)
                if obj is not None:
                    objects.append(obj)
            token = page.continue_token
            if not token:
                break
            if self._stop.is_set():
                return False
        if not page.resource_version:
            raise Unavailable(f"list {self.resource}: the list carries no resourceVersion")
        self._known = {obj.key: obj for obj in objects}
        self._rv = page.resource_version
        log.debug(
            "listed %d %s in %d page(s) at resourceVersion %s",
            len(objects),
            self.resource,
            pages,
            page.resource_version,
        )
        self._succeeded()
        self._backoff.reset()
        self._post(self._apply_list, objects)
        return True

    def _watch(self) -> None:
        rv = self._rv
        if rv is None:
            return
        stream = self.source.watch(
            self.kind,
            resource_version=rv,
            timeout_s=self.watch_timeout_s,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        with self._lock:
            if self._stop.is_set():
                stream.close()
                return
            self._stream = stream
        self._succeeded()
        started = time.monotonic()
        events = 0
        try:
            for event in stream:
                if self._stop.is_set():
                    return
                self._handle(event)
                if not events:
                    self._progress()
                events += 1
        finally:
            with self._lock:
                self._stream = None
            stream.close()
        if events or self._stop.is_set():
            return
        if time.monotonic() - started < MIN_WATCH_S:
            log.debug("watch of %s ended at once; backing off", self.resource)
            raise _ShortWatch
        self._progress()

    def _handle(self, event: WatchEvent) -> None:
        etype, raw = event.type, event.object
        if etype == ERROR:
            raise status_error(raw, resource=self.resource, verb="watch")
        meta: JSON = raw.get("metadata") or {}
        rv = meta.get("resourceVersion")
        if etype == BOOKMARK:
            if rv:
                self._rv = str(rv)
            return
        if etype not in (ADDED, MODIFIED, DELETED):
            log.warning("watch of %s: ignoring event of type %r", self.resource, etype)
            return
        key: Key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if etype == DELETED:
            old = self._known.pop(key, None)
            if old is not None:
                self._post(self.sink.apply, self.kind, DELETED, old)
        else:
            obj = from_api(self.kind, raw)
            if obj is None:
                # Not DNS-relevant any more (a pod that finished, a slice that lost its service
                # label): forget it if it was known.
                old = self._known.pop(key, None)
                if old is not None:
                    self._post(self.sink.apply, self.kind, DELETED, old)
            else:
                self._known[obj.key] = obj
                self._post(self.sink.apply, self.kind, etype, obj)
        if rv:
            self._rv = str(rv)

    # -- hand-over to the loop -------------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: object) -> None:
        if self._stop.is_set():
            return
        try:
            self.loop.call_soon_threadsafe(self._on_loop, fn, args)
        except RuntimeError as exc:  # the loop is closed: nobody is listening any more
            raise _LoopClosed from exc

    def _on_loop(self, fn: Callable[..., None], args: tuple[object, ...]) -> None:
        if not self._stop.is_set():
            fn(*args)

    def _post_status(self, *, connected: bool, error: str | None, forbidden: str | None) -> None:
        self._post(self._set_status, connected, error, forbidden)

    def _apply_list(self, objects: list[Object]) -> None:
        self.sink.replace(self.kind, objects)
        first = not self.listed
        self.listed = True
        if first:
            log.debug("%s synced", self.resource)
        self._notify()

    def _set_status(self, connected: bool, error: str | None, forbidden: str | None) -> None:
        changed = (self.connected, self.last_error, self.forbidden) != (connected, error, forbidden)
        self.connected, self.last_error, self.forbidden = connected, error, forbidden
        if changed:
            self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self)


class _ShortWatch(Exception):
    """A watch ended at once without events; back off before the next one."""


class _LoopClosed(Exception):
    """The event loop is gone; the thread ends."""
