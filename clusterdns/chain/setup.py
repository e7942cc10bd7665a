"""What a plugin's setup sees: its block's zones and settings, and the hooks it may register.

Setup parses options into a frozen config and returns a PluginFactory; it opens nothing. Sockets,
threads and tasks start in hooks registered here, run by the server's lifecycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from clusterdns.chain.fastpath import Generations
from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.corefile import Directive
from clusterdns.dnsutil.zones import ZoneAddr
from clusterdns.metrics import Metrics
from clusterdns.webserver import HTTPRegistry

Hook = Callable[[], Awaitable[None]]
ReadyCheck = Callable[[], bool]


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
