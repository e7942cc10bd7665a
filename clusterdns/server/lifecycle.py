"""Start -> serve -> drain -> stop for one configuration, and the swap to a new one (reload).

Start: side listeners (health, ready, metrics) bind first — a side address that cannot be bound
is a start-up error (deviation Q31) — then plugin start-up hooks (watch sync happens there), then
every DNS socket is bound before any of them serves, then the banner. Stop: not ready, lameduck
wait (DNS and /health keep answering), side listeners close, DNS listeners stop and queries in
flight finish (up to 5 s), shutdown hooks run in reverse. Every step is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
from collections.abc import Awaitable, Callable
from typing import Final, TextIO

from clusterdns import APP_NAME, __version__
from clusterdns.chain.build import Config, ListenKey
from clusterdns.chain.fastpath import FastPath
from clusterdns.dnsutil.duration import format_duration
from clusterdns.errors import ServerError
from clusterdns.server.listener import DNSListener, server_label
from clusterdns.server.mux import Mux
from clusterdns.server.responder import DEFAULT_MAX_INFLIGHT, Responder
from clusterdns.server.tcp import ConnectionCount, TCPLimits

log = logging.getLogger("clusterdns.server")

GRACE_S: Final = 5.0


def version_lines(revision: str = "") -> list[str]:
    """The two version lines (`-version` and the banner)."""
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return [
        f"{APP_NAME}-{__version__}",
        f"{sys.platform}/{machine}, python{platform.python_version()}, {revision or 'unknown'}",
    ]


class Server:
    """A running configuration: its DNS listeners, side listeners and plugin hooks."""

    def __init__(
        self,
        config: Config,
        *,
        quiet: bool = True,
        out: TextIO | None = None,
        limits: TCPLimits | None = None,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        revision: str = "",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_up: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.quiet = quiet
        self.out = out or sys.stdout
        self.limits = limits or TCPLimits()
        self.max_inflight = max_inflight
        self.revision = revision
        self.connections = ConnectionCount()
        self.listeners: dict[ListenKey, DNSListener] = {}
        """Listeners by their bound key (a port-0 key is replaced by the port it got)."""
        self.bound: dict[ListenKey, ListenKey] = {}
        """The running configuration's listener keys -> bound keys."""
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self._stopping = False
        self._sleep = sleep
        self._on_up = on_up

    @property
    def metrics(self) -> object:
        """The process-wide metrics object."""
        return self.config.process.metrics

    def port(self, key: ListenKey | None = None, proto: str = "udp") -> int:
        """The bound port of a listener (the only one when `key` is None)."""
        if key is None:
            key = next(iter(self.listeners))
        return self.listeners[key].port

    # -- start -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bring the configuration up; on any failure nothing is left running.

        Raises:
            ServerError: a DNS or side listener cannot be bound, or a start-up hook failed.
        """
        process = self.config.process
        try:
            await process.http.start()
            for hook in process.startup:
                await hook()
            self._make_listeners()
            for listener in self.listeners.values():
                await listener.start()
        except BaseException:
            for listener in self.listeners.values():
                listener.close_sockets()
            await self._teardown(grace_s=0.0)
            raise
        self._publish_enabled()
        if self._on_up is not None:
            self._on_up()  # the pid file, written once every listener is up (before the banner)
        if not self.quiet:
            self._banner()
        self.started.set()

    def _make_listeners(self) -> None:
        process = self.config.process
        for key, zones in self.config.listeners.items():
            responder = Responder(
                mux=Mux(zones),
                fastpath=FastPath(process.generations),
                metrics=process.metrics,
                server=server_label(key),
                max_inflight=self.max_inflight,
            )
            listener = DNSListener(key, responder, process.metrics, self.limits, self.connections)
            listener.bind()
            actual = (key[0], key[1], listener.port)
            responder.server = server_label(actual)
            self.listeners[actual] = listener
            self.bound[key] = actual
            for block in {id(b): b for b in zones.values()}.values():
                block.settings.bound.append((key[1], listener.port))

    def _publish_enabled(self) -> None:
        gauge = self.config.process.metrics.plugin_enabled
        for key, zones in self.config.listeners.items():
            label = self.listeners[self.bound[key]].responder.server
            for zone, block in zones.items():
                for name in block.plugins:
                    gauge.set((label, zone, "", name), 1)

    def _banner(self) -> None:
        lines: list[str] = []
        for key, zones in self.config.listeners.items():
            port = self.listeners[self.bound[key]].port
            for zone in zones:
                suffix = f" on {key[1]}" if key[1] else ""
                lines.append(f"{zone}:{port}{suffix}")
        lines.extend(version_lines(self.revision))
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()

    # -- stop ------------------------------------------------------------------------------------
    async def stop(self, *, graceful: bool = True) -> None:
        """Shut down: not ready, lameduck, side listeners, DNS listeners, hooks. Idempotent."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        process = self.config.process
        process.shutting_down = True
        if process.lameduck_s > 0:
            logging.getLogger("clusterdns.plugins.health").info(
                "Going into lameduck mode for %s", format_duration(process.lameduck_s)
            )
            await self._sleep(process.lameduck_s)  # the documented wait itself, not a sync point
        await self._teardown(grace_s=GRACE_S if graceful else 0.0)
        self.stopped.set()

    async def _teardown(self, grace_s: float) -> None:
        process = self.config.process
        await process.http.stop()
        for listener in self.listeners.values():
            await listener.stop(grace_s)
        failed = False
        for hook in reversed(process.shutdown):
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
                failed = True
        self.hook_failed = failed

    hook_failed = False

    # -- reload ----------------------------------------------------------------------------------
    async def swap(self, new: Config) -> None:
        """Replace the running configuration with `new`, keeping listeners whose address stays.

        The new configuration's side listeners and hooks start before the old ones stop; DNS
        listeners on the same (scheme, address, port) are kept and only their routing is swapped,
        so no query is dropped.

        Raises:
            ServerError: the new configuration could not start; the old one keeps serving.
        """
        old = self.config
        old_http = old.process.http
        new_http = new.process.http
        # Side listeners whose address is unchanged stay bound; they get the new routes only once
        # the new configuration has started, so /ready never answers from half-started state.
        handover = {
            address: new_http.listeners.pop(address)
            for address in list(new_http.listeners)
            if address in old_http.listeners and old_http.listeners[address].server is not None
        }
        try:
            await new_http.start()
            for hook in new.process.startup:
                await hook()
        except BaseException:
            await new_http.stop()
            raise
        for address, incoming in handover.items():
            kept = old_http.listeners[address]
            kept.routes = incoming.routes
            new_http.listeners[address] = kept
        added: dict[ListenKey, DNSListener] = {}
        bound: dict[ListenKey, ListenKey] = {}
        try:
            for key, zones in new.listeners.items():
                if key in self.listeners:
                    bound[key] = key
                    continue
                responder = Responder(
                    mux=Mux(zones),
                    fastpath=FastPath(new.process.generations),
                    metrics=new.process.metrics,
                    server=server_label(key),
                    max_inflight=self.max_inflight,
                )
                listener = DNSListener(
                    key, responder, new.process.metrics, self.limits, self.connections
                )
                listener.bind()
                actual = (key[0], key[1], listener.port)
                responder.server = server_label(actual)
                added[actual] = listener
                bound[key] = actual
        except ServerError:
            for listener in added.values():
                listener.close_sockets()
            raise
        for key, zones in new.listeners.items():
            for block in {id(b): b for b in zones.values()}.values():
                block.settings.bound.append(
                    (key[1], (added.get(bound[key]) or self.listeners[key]).port)
                )
        for key, zones in new.listeners.items():
            if key in self.listeners:
                responder = self.listeners[key].responder
                responder.mux = Mux(zones)
                responder.fastpath = FastPath(new.process.generations)
        for listener in added.values():
            await listener.start()
        removed = [k for k in self.listeners if k not in bound.values()]
        self.listeners.update(added)
        self.bound = bound
        for key in removed:
            await self.listeners.pop(key).stop(GRACE_S)
        for address, side in old_http.listeners.items():
            if new_http.listeners.get(address) is not side:
                await side.stop()
        for hook in reversed(old.process.shutdown):
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook of the previous configuration failed")
        self.config = new
        self._publish_enabled()
