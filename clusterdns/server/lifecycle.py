"""Start -> serve -> drain -> stop for one configuration, and the swap to a new one (reload).

Start: side listeners (health, ready, metrics) bind first — a side address that cannot be bound
is a start-up error (deviation Q31) — then plugin start-up hooks (watch sync happens there), then
every DNS socket is bound before any of them serves, then the banner. Stop: not ready, lameduck
wait (DNS and /health keep answering), side listeners close, DNS listeners stop and queries in
flight finish (up to 5 s), shutdown hooks run in reverse. Every step is idempotent. Swap (a
reload): the new configuration starts completely while the old one serves, then routing switches
in one step; unchanged DNS and side listeners are kept, nothing enters lameduck (deviation Q23).
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
from clusterdns.chain.setup import Hook
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
        self._swap_lock = asyncio.Lock()
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

    def _publish_enabled(self, *, reset: bool = False) -> None:
        gauge = self.config.process.metrics.plugin_enabled
        if reset:
            gauge.values.clear()  # as CoreDNS on restart: only the running chains are listed
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
        # Best effort, as CoreDNS (fmt.Println, its error ignored): the server is up and serving
        # by now, and stdout on a full disk (ENOSPC), a closed pipe or a closed stream must not
        # stop it. Log lines written later fail the same way and are dropped by logging.
        try:
            self.out.write("".join(line + "\n" for line in lines))
            self.out.flush()
        except (OSError, ValueError):
            pass

    # -- stop ------------------------------------------------------------------------------------
    async def stop(self, *, graceful: bool = True) -> None:
        """Shut down: not ready, lameduck, side listeners, DNS listeners, hooks. Idempotent."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        async with self._swap_lock:
            pass  # a reload under way finishes, or gives up, before shutdown begins
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
        self.hook_failed = not await _run_hooks(process.shutdown, "shutdown hook")

    hook_failed = False

    # -- reload ----------------------------------------------------------------------------------
    async def swap(self, new: Config) -> None:
        """Replace the running configuration with `new` without dropping a query (a reload).

        `new` starts completely before anything of the old one stops: its side listeners bind
        (one on an address the old configuration already serves is kept instead and gets the
        new routes only once `new` started, so `/ready` never answers from half-started state and
        never closes), its start-up hooks run, its new DNS sockets bind. Then, in one step, every
        DNS listener on an unchanged (scheme, address, port) - a port-0 key keeps the port it
        got - routes to the new chains, and resources `new` took over from the old configuration
        change owner. Queries in flight finish on the old chains (up to 5 s) before the old
        configuration's shutdown hooks run; listeners `new` no longer has stop gracefully. A
        reload never enters lameduck and never marks the process as shutting down.

        Raises:
            ServerError: `new` could not start (or the server is stopping); everything `new`
                started is stopped again and the old configuration keeps serving.
        """
        await self.started.wait()  # a reload asked for during start-up waits for it to finish
        if self._stopping:
            new.process.resources.abandon()
            raise ServerError("the server is shutting down")
        async with self._swap_lock:
            await self._swap(new)

    def _kept(self, key: ListenKey, claimed: set[ListenKey]) -> ListenKey | None:
        """The running listener a new configuration's key keeps, if any."""
        actual = key if key in self.listeners else self.bound.get(key)
        if actual is None or actual not in self.listeners or actual in claimed:
            return None
        return actual

    async def _swap(self, new: Config) -> None:
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
        added: dict[ListenKey, DNSListener] = {}
        bound: dict[ListenKey, ListenKey] = {}
        kept: set[ListenKey] = set()
        try:
            await new_http.start()
            for hook in new.process.startup:
                await hook()
            for key in new.listeners:
                actual = self._kept(key, kept)
                if actual is not None:
                    kept.add(actual)
                    bound[key] = actual
                    continue
                responder = Responder(
                    mux=Mux({}),
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
            if self._stopping:
                raise ServerError("the server is shutting down")
        except BaseException:
            for listener in added.values():
                listener.close_sockets()
            await new_http.stop()  # only what it bound itself: handed-over listeners are not in it
            await _run_hooks(new.process.shutdown, "shutdown hook of a failed reload")
            new.process.resources.abandon()
            raise
        # The switch: no await from here until every route is the new one.
        for address, incoming in handover.items():
            side = old_http.listeners[address]
            side.routes = incoming.routes
            new_http.listeners[address] = side
        for key, zones in new.listeners.items():
            listener = added.get(bound[key]) or self.listeners[bound[key]]
            listener.responder.mux = Mux(zones)
            listener.responder.fastpath = FastPath(new.process.generations)
            for block in {id(b): b for b in zones.values()}.values():
                block.settings.bound.append((key[1], listener.port))
        new.process.resources.commit()
        self.config = new
        self.bound = bound
        in_flight = {task for key in kept for task in self.listeners[key].responder.tasks}
        removed = [key for key in self.listeners if key not in kept]
        self.listeners.update(added)
        self._publish_enabled(reset=True)
        # New sockets start serving; what the new configuration dropped winds down.
        for listener in added.values():
            try:
                await listener.start()
            except OSError as exc:
                log.error("Starting %s: %s", server_label(listener.key), exc)
                listener.close_sockets()
        for key in removed:
            await self.listeners.pop(key).stop(GRACE_S)
        for address, side in old_http.listeners.items():
            if new_http.listeners.get(address) is not side:
                await side.stop()
        if in_flight:
            # Queries that entered the old chains finish before their plugins shut down.
            await asyncio.wait(in_flight, timeout=GRACE_S)
        await _run_hooks(old.process.shutdown, "shutdown hook of the previous configuration")


async def _run_hooks(hooks: list[Hook], what: str) -> bool:
    """Run shutdown hooks in reverse order, each even if an earlier one failed; True if all ran."""
    ok = True
    for hook in reversed(hooks):
        try:
            await hook()
        except Exception:
            log.exception("%s failed", what)
            ok = False
    return ok
