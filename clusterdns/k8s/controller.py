"""The controller: one reflector per watched kind, the synced signal, and connectivity status.

Owns which selectors each kind is watched with (spec §6.2), the start-up wait for the first sync
(§6.10: `waiting for Kubernetes API before starting server` every 0.5 s), and the log lines when
the API is lost after sync and when it comes back. It lives on the event loop: its state changes
only in callbacks the reflectors post to the loop. It never builds DNS data and never polls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from clusterdns.k8s.objects import Kind
from clusterdns.k8s.reflector import (
    PAGE_SIZE,
    WATCH_TIMEOUT_S,
    BackoffPolicy,
    Reflector,
    Sink,
)
from clusterdns.k8s.source import ListWatch

log = logging.getLogger("clusterdns.plugins.kubernetes")

POD_FIELD_SELECTOR: Final = "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown"
"""Pods that can still hold their IP (spec §6.2); finished pods arrive as deletes."""

WAIT_LOG_INTERVAL_S: Final = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerStatus:
    """A snapshot of the watches, for logs, metrics and readiness."""

    synced: bool
    """Every kind has completed its first list."""
    connected: bool
    """Every watch reached the source on its last attempt."""
    listed: tuple[Kind, ...]
    """Kinds whose first list has been applied."""
    forbidden: tuple[str, ...]
    """Resources the credentials may not list or watch (RBAC)."""
    errors: tuple[tuple[str, str], ...]
    """(resource, last error) of every watch currently failing."""


class Controller:
    """Runs the reflectors of `kinds` against `source`, feeding `sink` on `loop`.

    Construct, `start()` and read it on the loop thread.
    """

    def __init__(
        self,
        source: ListWatch,
        sink: Sink,
        loop: asyncio.AbstractEventLoop,
        kinds: Iterable[Kind],
        *,
        label_selector: str | None = None,
        namespace_label_selector: str | None = None,
        pod_field_selector: str | None = POD_FIELD_SELECTOR,
        page_size: int = PAGE_SIZE,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.source = source
        self.loop = loop
        self.listeners: list[Callable[[], None]] = []
        """Called on the loop after any reflector's status changes (listed, connected, errors)."""
        self._synced = asyncio.Event()
        self._api_lost = False
        self.reflectors: dict[Kind, Reflector] = {}
        for kind in dict.fromkeys(kinds):
            labels = namespace_label_selector if kind is Kind.NAMESPACE else label_selector
            fields = pod_field_selector if kind is Kind.POD else None
            self.reflectors[kind] = Reflector(
                kind,
                source,
                sink,
                loop,
                label_selector=labels or None,
                field_selector=fields or None,
                page_size=page_size,
                watch_timeout_s=watch_timeout_s,
                backoff=backoff,
                on_change=self._changed,
            )
        if not self.reflectors:
            self._synced.set()

    def start(self) -> None:
        """Start every reflector's thread."""
        for reflector in self.reflectors.values():
            reflector.start()

    def stop(self) -> None:
        """Stop every reflector; the sink keeps the last state and receives nothing more."""
        for reflector in self.reflectors.values():
            reflector.stop()

    def join(self, timeout_s: float) -> bool:
        """Wait (blocking) for the reflector threads to end; True when all have."""
        return all(r.join(timeout_s) for r in self.reflectors.values())

    @property
    def synced(self) -> bool:
        """Whether every kind has completed its first list."""
        return self._synced.is_set()

    async def wait_synced(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the first sync, logging every 0.5 s meanwhile (spec §6.10).

        Returns whether the watches are synced; on timeout the start-up warning is logged.
        """
        deadline = self.loop.time() + timeout_s
        while not self._synced.is_set():
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                log.warning("starting server with unsynced Kubernetes API")
                return False
            try:
                await asyncio.wait_for(
                    self._synced.wait(), timeout=min(WAIT_LOG_INTERVAL_S, remaining)
                )
            except TimeoutError:
                if self.loop.time() < deadline:
                    log.info("waiting for Kubernetes API before starting server")
        return True

    def status(self) -> ControllerStatus:
        """The current state of the watches."""
        rs = self.reflectors.values()
        return ControllerStatus(
            synced=self.synced,
            connected=all(r.connected for r in rs),
            listed=tuple(r.kind for r in rs if r.listed),
            forbidden=tuple(r.resource for r in rs if r.forbidden is not None),
            errors=tuple((r.resource, r.last_error) for r in rs if r.last_error is not None),
        )

    def _changed(self, reflector: Reflector) -> None:
        """A reflector's status changed (called on the loop)."""
        rs = self.reflectors.values()
        if not self._synced.is_set() and all(r.listed for r in rs):
            log.info("synced with %s", self.source.name)
            self._synced.set()
        if self._synced.is_set():
            lost = [r for r in rs if not r.connected and r.forbidden is None]
            if lost and not self._api_lost:
                self._api_lost = True
                log.warning(
                    "%s unreachable (%s); keep answering from the last known state",
                    self.source.name,
                    lost[0].last_error or "connection lost",
                )
            elif not lost and self._api_lost:
                self._api_lost = False
                log.info("%s reachable again", self.source.name)
        for listener in list(self.listeners):
            listener()
