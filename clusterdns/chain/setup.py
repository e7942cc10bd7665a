"""What a plugin's setup sees: its block's zones and settings, and the hooks it may register.

Setup parses options into a frozen config and returns a PluginFactory; it opens nothing. Sockets,
threads and tasks start in hooks registered here, run by the server's lifecycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

from clusterdns.chain.fastpath import Generations
from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.corefile import Directive, ServerBlock
from clusterdns.dnsutil.zones import ZoneAddr
from clusterdns.metrics import Metrics
from clusterdns.webserver import HTTPRegistry, split_address

Hook = Callable[[], Awaitable[None]]
ReadyCheck = Callable[[], bool]
T = TypeVar("T")


class UpstreamRegistry(Protocol):
    """What `forward` offers its block, so `loop` can take a looping upstream out of service.

    The two plugins never import each other; they meet through `BlockSettings.upstreams`.
    """

    def upstreams_for(self, qname: str) -> list[str]:
        """Upstreams (`host:port`) a query for lower-case `qname` is in flight to or would use."""
        ...

    def quarantine(self, upstream: str, reason: str) -> None:
        """Stop sending to `upstream`; what would go there gets SERVFAIL."""
        ...


@dataclass
class BlockSettings:
    """One server block as setup sees it; `bind` fills the listen addresses."""

    index: int
    keys: tuple[ZoneAddr, ...]
    file: str
    line: int
    directives: tuple[str, ...]
    listen: list[str] = field(default_factory=list)
    """Addresses to listen on; empty means the wildcard (all IPv4 and IPv6 addresses)."""
    ready_checks: list[tuple[str, ReadyCheck]] = field(default_factory=list)
    ready_notes: list[Callable[[], str]] = field(default_factory=list)
    """Informational lines for the `/ready` body that never make it fail (e.g. a detected loop)."""
    bound: list[tuple[str, int]] = field(default_factory=list)
    """(address, port) of each DNS listener serving the block, filled once bound ("" = wildcard);
    how plugins that query their own server (loop) find a port-0 key's real port."""
    upstreams: list[UpstreamRegistry] = field(default_factory=list)
    """Registered by each `forward` line of the block."""
    head: Handler | None = None
    """The block's whole chain, set once built: plugins that re-run a query from the top of
    their own block (ExternalName targets) call `head.serve` with a CaptureWriter."""

    @property
    def zones(self) -> tuple[str, ...]:
        """The block's zones, in key order, without duplicates."""
        return tuple(dict.fromkeys(k.zone for k in self.keys))


class Reloader(Protocol):
    """The process's reload machinery as one configuration sees it (used by `reload`).

    The command line sets one per loaded configuration; it is None where nothing can be
    reloaded (`-validate`, configurations built by tests).
    """

    @property
    def blocks(self) -> Sequence[ServerBlock]:
        """The server blocks this configuration was set up from."""
        ...

    def read(self) -> list[ServerBlock]:
        """Read and parse the Corefile again from where the process loaded it, imports included.

        Directive names are not checked here (a misspelt one fails the restart instead).

        Raises:
            CorefileError: the text does not parse (file:line).
            ClusterDNSError: the Corefile cannot be read.
        """
        ...

    async def restart(self, blocks: list[ServerBlock]) -> None:
        """Set `blocks` up completely, then switch the running server to them.

        Raises:
            ClusterDNSError: the new configuration failed; the running one keeps serving.
        """
        ...


@dataclass(eq=False)
class Lease:
    """One resource a configuration holds through `ProcessContext.reuse`."""

    key: Hashable
    value: object
    owner: Resources
    """The configuration whose shutdown stops it; a successor that took it over becomes owner."""


class Resources:
    """Long-lived things a configuration holds (a watch cache) that its successor may take over.

    A reload sets the new configuration up with `previous` = the running one's resources. A setup
    that asks for a key the running configuration also holds gets that very resource, already
    started; it changes owner only when the new configuration goes live (`commit`), so a reload
    that fails leaves everything to the configuration that keeps serving (`abandon`).
    """

    def __init__(self, previous: Resources | None = None) -> None:
        self.previous = previous
        self.leases: list[Lease] = []
        self._taken: list[Lease] = []

    def take(self, key: Hashable) -> Lease | None:
        """The running configuration's resource for `key` not yet taken by this one, if any."""
        if self.previous is None:
            return None
        for lease in self.previous.leases:
            if (
                lease.owner is self.previous
                and lease.key == key
                and not any(t is lease for t in self._taken)
            ):
                self._taken.append(lease)
                return lease
        return None

    def commit(self) -> None:
        """Mark the configuration live: what it took over is its own from now on."""
        for lease in self._taken:
            lease.owner = self
        self._taken.clear()
        self.previous = None

    def abandon(self) -> None:
        """Mark the configuration as never running: the previous one keeps everything."""
        self._taken.clear()
        self.previous = None


@dataclass
class ProcessContext:
    """Everything one loaded configuration shares across its blocks."""

    metrics: Metrics
    http: HTTPRegistry
    generations: Generations
    startup: list[Hook] = field(default_factory=list)
    shutdown: list[Hook] = field(default_factory=list)
    lameduck_s: float = 0.0
    shutting_down: bool = False
    validate_only: bool = False
    reloader: Reloader | None = None
    """How the `reload` plugin re-reads the Corefile and restarts (None: nothing to reload)."""
    resources: Resources = field(default_factory=Resources)
    """What this configuration holds through `reuse`; on a reload, linked to the running one's."""

    def reuse(
        self,
        key: Hashable,
        make: Callable[[], T],
        *,
        start: Callable[[T], Awaitable[None]],
        stop: Callable[[T], Awaitable[None]],
    ) -> T:
        """Return the running configuration's resource for `key`, or `make()` a new one.

        A new resource is started by a start-up hook; one taken over from the running
        configuration is already running and is not started again. `stop` runs as a shutdown
        hook of whichever configuration owns the resource by then, so the old configuration's
        shutdown leaves a resource its successor took over alone. `stop` must be safe to call
        on a resource that was never started (a failed start-up runs every shutdown hook).
        """
        lease = self.resources.take(key)
        if lease is None:
            value = make()
            lease = Lease(key, value, self.resources)

            async def start_hook() -> None:
                await start(value)

            self.startup.append(start_hook)
        self.resources.leases.append(lease)
        held = cast(T, lease.value)
        resources = self.resources

        async def stop_hook() -> None:
            if lease.owner is resources:
                await stop(held)

        self.shutdown.append(stop_hook)
        return held


@dataclass
class SetupContext:
    """Handed to each plugin's setup function."""

    block: BlockSettings
    process: ProcessContext

    @property
    def zones(self) -> tuple[str, ...]:
        """The block's zones (lower-case, absolute)."""
        return self.block.zones

    @property
    def metrics(self) -> Metrics:
        """The process-wide metrics."""
        return self.process.metrics

    def on_startup(self, hook: Hook) -> None:
        """Run `hook` after setup succeeded, before DNS listeners open."""
        self.process.startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        """Run `hook` on shutdown (reverse registration order)."""
        self.process.shutdown.append(hook)

    def add_ready_check(self, name: str, check: ReadyCheck) -> None:
        """Let `ready` ask `check()` on each request; `name` is reported while it is False."""
        self.block.ready_checks.append((name, check))

    def fingerprint(self, lines: Sequence[Directive]) -> Hashable:
        """A `reuse` key for a plugin's lines in this block.

        It holds the block's zones and the text of every token of the lines, nested blocks
        included, but no file name or line number: moving the lines keeps the key.
        """
        parts: list[str | tuple[str, ...]] = []
        stack: list[Directive | None] = list(reversed(lines))
        while stack:
            line = stack.pop()
            if line is None:
                parts.append("}")
                continue
            parts.append((line.name, *line.values))
            if line.block is not None:
                parts.append("{")
                stack.append(None)
                stack.extend(reversed(line.block))
        return (lines[0].plugin if lines else "", self.zones, tuple(parts))


SetupFunc = Callable[[Sequence[Directive], SetupContext], PluginFactory | None]
"""A plugin's setup: all its lines in one block, in order -> a factory (None: setup-only plugin)."""


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """A registered directive."""

    name: str
    setup: SetupFunc
    once: bool = False
    """Reject a second line in a block (`this plugin can only be used once per Server Block`)."""
    replay_safe: bool = False
    """The fast path may replay a reply this plugin's chain produced without running the plugin:
    it has no per-query side effect and does not depend on anything but the query bytes (and
    the generations of offers). A block stores fast-path offers only if all its plugins are."""


def address_arg(d: Directive, default: str) -> str:
    """The optional `host:port` argument of a side-listener directive (health, ready, prometheus).

    Raises:
        CorefileError: more than one argument, or one that is not `host:port`.
    """
    args = d.expect_args(0, 1)
    if not args:
        return default
    try:
        split_address(args[0])
    except ValueError as exc:
        raise d.arg_error(0, str(exc)) from exc
    return args[0]
