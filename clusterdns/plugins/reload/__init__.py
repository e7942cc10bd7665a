"""# reload

## Name

*reload* - allows automatic reload of a changed Corefile.

## Description

Every INTERVAL the Corefile is read again from where the process loaded it (the `-conf` file,
imports included), parsed, and compared with the running configuration by the SHA-512 of the
parsed structure: every token's text, file name and line number. An edit that leaves every token
on its line (a comment appended to a line, other indentation) changes nothing; adding or removing
a line above a directive, even a blank or comment line, does, and so does an edit in an imported
file. The file is read by its path each time, so the `..data` symlink swap of a ConfigMap volume
is picked up like any other edit.

When the digest changed, the new configuration is set up completely (every plugin's setup and
start-up must succeed) before it replaces the running one, and the switch drops no query: DNS
sockets whose address stays are kept and only their routing changes, queries in flight finish on
the configuration they started on. The `health`, `ready` and `prometheus` listeners stay up: one
whose address did not change is kept and serves the new configuration once it started; one whose
address changed is bound before the old one closes. A reload never enters lameduck and never
turns `/ready` to 503 (CoreDNS closes those listeners first). A `kubernetes` watch whose
directive (all its tokens) and server-block zones did not change keeps its cache: no relist, no
start-up wait.

A reload logs `[INFO] Reloading`, then (from the new configuration)
`[INFO] plugin/reload: Running configuration SHA512 = <hex>`, then `[INFO] Reloading complete`.
If the new configuration fails, the running one keeps serving, and the failure is counted and
logged with the file and line of the error, as CoreDNS words it: `[ERROR] Restart failed:
<error>`, then `[ERROR] plugin/reload: Corefile changed but reload failed: starting with listener
file descriptors: <error>`. The same broken Corefile is not tried again until it changes. A
Corefile that does not parse is only logged (`[WARNING] plugin/reload: Corefile parse failed:
...`) until it parses.

Sending the process SIGUSR1 reloads the Corefile at once, with or without this plugin and
without comparing digests.

The check period is fixed per loaded configuration: INTERVAL plus a random offset in
[-JITTER/2, +JITTER/2), so that replicas started together do not reload in lock-step.

The plugin applies to the whole process; use it once, in any server block. Of several server
blocks that have it, the last one sets the period.

## Syntax

~~~ txt
reload [INTERVAL] [JITTER]
~~~

* **INTERVAL** how often to check, Go duration syntax; default `30s`, at least `2s`.
* **JITTER** the spread of the random offset; default `15s`, at least `1s`, or `0` for none.
  A value above INTERVAL/2 is cut to INTERVAL/2.

## Examples

Check every 30 seconds, give or take 7.5:

~~~ corefile
. {
    reload
    whoami
}
~~~

Check every 10 seconds, give or take one:

~~~ corefile
. {
    reload 10s 2s
    whoami
}
~~~

## Metrics

* `coredns_reload_failed_total{}` - reloads by this plugin that failed (SIGUSR1 reloads are not
  counted).
* `coredns_reload_version_info{hash, value}` - always 1; `hash` is `sha512`, `value` the digest
  of the last Corefile the plugin tried to load. As in CoreDNS it is absent until the plugin
  first sees a changed Corefile, and it shows the new digest even when that reload failed.

## See Also

SIGUSR1 and the other signals are described in the README; `docs/deviations.md` (D2) lists what
a reload does better than CoreDNS.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from clusterdns.chain.handler import PluginFactory
from clusterdns.chain.setup import PluginSpec, Reloader, SetupContext
from clusterdns.corefile import Directive, ServerBlock, Token
from clusterdns.dnsutil.duration import format_duration, parse_duration
from clusterdns.errors import ClusterDNSError, CorefileError
from clusterdns.metrics import NAMESPACE, Counter, Gauge, Metrics

NAME: Final = "reload"
DEFAULT_INTERVAL_S: Final = 30.0
DEFAULT_JITTER_S: Final = 15.0
MIN_INTERVAL_S: Final = 2.0
MIN_JITTER_S: Final = 1.0
HASH: Final = "sha512"

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    """The parsed `reload` directive."""

    interval_s: float = DEFAULT_INTERVAL_S
    jitter_s: float = DEFAULT_JITTER_S
    """Already cut to interval/2; 0 means no random offset."""

    def period(self, rng: random.Random) -> float:
        """The check period: INTERVAL plus an offset drawn from [-JITTER/2, +JITTER/2)."""
        if self.jitter_s <= 0:
            return self.interval_s
        return self.interval_s + rng.random() * self.jitter_s - self.jitter_s / 2


def parse(d: Directive) -> ReloadConfig:
    """Parse one `reload` line.

    Raises:
        CorefileError: a bad duration, a value below its minimum, or extra arguments.
    """
    args = d.expect_args(0, 2)
    d.expect_no_block()
    interval_s = DEFAULT_INTERVAL_S
    jitter_s = DEFAULT_JITTER_S
    if args:
        interval_s = _duration(d, 0)
    if interval_s < MIN_INTERVAL_S:
        raise d.arg_error(
            0, f"interval value must be greater or equal to {format_duration(MIN_INTERVAL_S)}"
        )
    if len(args) > 1:
        jitter_s = _duration(d, 1)
    if jitter_s != 0 and jitter_s < MIN_JITTER_S:
        raise d.arg_error(
            1, f"jitter value must be 0 or greater or equal to {format_duration(MIN_JITTER_S)}"
        )
    return ReloadConfig(interval_s=interval_s, jitter_s=min(jitter_s, interval_s / 2))


def _duration(d: Directive, index: int) -> float:
    try:
        return parse_duration(d.args[index].text)
    except ValueError as exc:
        raise d.arg_error(index, str(exc)) from exc


# -- the digest -----------------------------------------------------------------------------------
def digest(blocks: Sequence[ServerBlock]) -> str:
    """The SHA-512 (hex) of parsed server blocks: every token's text, file and line, and nesting.

    Comments, blank space within a line and indentation do not count; line numbers do, so moving
    a directive to another line changes the digest.
    """
    items: list[object] = []
    for block in blocks:
        items.append(["keys", *(_token(t) for t in block.keys)])
        stack: list[Directive | None] = list(reversed(block.directives))
        while stack:
            line = stack.pop()
            if line is None:
                items.append("}")
                continue
            items.append([_token(t) for t in (line.token, *line.args)])
            if line.block is not None:
                items.append("{")
                stack.append(None)
                stack.extend(reversed(line.block))
        items.append("end")
    text = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha512(text.encode("utf-8", "surrogatepass")).hexdigest()


def _token(tok: Token) -> list[object]:
    return [tok.text, tok.file, tok.line]


# -- metrics --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReloadMetrics:
    """The plugin's series, once per process (they survive every reload)."""

    failed: Counter
    version_info: Gauge


class _Collector(Collector):
    """Publishes the series; `version_info` not at all while it has none (as client_golang)."""

    def __init__(self, found: ReloadMetrics) -> None:
        self.found = found

    def collect(self) -> Iterator[Metric]:
        yield self.found.failed.collect()
        if self.found.version_info.values:
            yield self.found.version_info.collect()


def _make_metrics(metrics: Metrics) -> ReloadMetrics:
    failed = Counter(
        f"{NAMESPACE}_reload_failed_total", "Counter of the number of failed reload attempts."
    )
    failed.inc((), 0)
    version_info = Gauge(
        f"{NAMESPACE}_reload_version_info",
        "A metric with a constant '1' value labeled by hash, and value which type of hash "
        "generated.",
        ("hash", "value"),
    )
    found = ReloadMetrics(failed, version_info)
    metrics.registry.register(_Collector(found))
    return found


def reload_metrics(metrics: Metrics) -> ReloadMetrics:
    """The reload series registered on `metrics` (registered on first use)."""
    return metrics.shared(NAME, _make_metrics)


# -- the poller -----------------------------------------------------------------------------------
class Poller:
    """Checks the Corefile of one loaded configuration every period; restarts on a change.

    Started by a start-up hook of its configuration and stopped by a shutdown hook, so after a
    successful reload the new configuration's poller takes over (with the new digest).
    """

    def __init__(
        self,
        reloader: Reloader,
        metrics: ReloadMetrics,
        period_s: float,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.reloader = reloader
        self.metrics = metrics
        self.period_s = period_s
        self.digest = digest(reloader.blocks)
        """The digest of the Corefile last loaded or tried."""
        self.task: asyncio.Task[None] | None = None
        self._sleep = sleep
        self._closed = False

    async def check(self) -> bool:
        """Check once: read, parse, compare, and restart if the digest changed.

        Returns whether a restart was attempted. Never raises (but may be cancelled).
        """
        try:
            blocks = self.reloader.read()
        except CorefileError as exc:
            log.warning("Corefile parse failed: %s", _one_line(exc))
            return False
        except ClusterDNSError as exc:
            log.warning("Corefile load failed: %s", _one_line(exc))
            return False
        new = digest(blocks)
        if new == self.digest:
            return False
        self.metrics.version_info.remove((HASH, self.digest))
        # Not retried with the same digest even if it fails: the file has to change again.
        self.digest = new
        try:
            await self.reloader.restart(blocks)
        except ClusterDNSError as exc:
            self.metrics.version_info.set((HASH, new), 1)
            self.metrics.failed.inc()
            log.error("Corefile changed but reload failed: %s", _one_line(exc))
            return True
        self.metrics.version_info.set((HASH, new), 1)
        return True

    async def run(self) -> None:
        """Check every period until stopped (or until a reload replaced this configuration)."""
        while not self._closed:
            await self._sleep(self.period_s)
            if self._closed:
                return
            await self.check()

    async def start(self) -> None:
        """Start-up hook: log the running digest and start checking in the background."""
        log.info("Running configuration SHA512 = %s", self.digest)
        if self.task is None and not self._closed:
            self.task = asyncio.get_running_loop().create_task(self.run(), name="reload poller")

    async def stop(self) -> None:
        """Shutdown hook: stop checking.

        Called from inside a check (the reload this poller started replaced its configuration),
        it only marks the poller closed; the check returns and the loop ends.
        """
        self._closed = True
        task, self.task = self.task, None
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        # Waited for without re-raising its CancelledError here: a traceback through this frame
        # would keep the poller (and its configuration's blocks) alive after it stopped.
        await asyncio.wait([task])


def _one_line(exc: BaseException) -> str:
    return str(exc).replace("\n", "; ")


_pollers: weakref.WeakValueDictionary[int, Poller] = weakref.WeakValueDictionary()
"""Each configuration's poller by id() of its reloader. A poller lives as long as its
configuration's hooks and keeps its reloader alive, so an id is never reused while listed."""
_rng = random.Random()


def poller_of(reloader: Reloader | None) -> Poller | None:
    """The poller a configuration with this reloader runs (None without `reload`)."""
    if reloader is None:
        return None
    poller = _pollers.get(id(reloader))
    return poller if poller is not None and poller.reloader is reloader else None


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory | None:
    """Parse `reload`; with a process to reload, prepare the configuration's one poller.

    Several blocks share the poller; the last block's line sets its period, as in CoreDNS.
    """
    config = parse(lines[0])
    metrics = reload_metrics(ctx.metrics)
    reloader = ctx.process.reloader
    if reloader is None:
        return None
    poller = poller_of(reloader)
    period_s = config.period(_rng)
    if poller is None:
        poller = _pollers[id(reloader)] = Poller(reloader, metrics, period_s)
        ctx.on_startup(poller.start)
        ctx.on_shutdown(poller.stop)
    else:
        poller.period_s = period_s
    return None


SPEC: Final = PluginSpec(NAME, setup, once=True, replay_safe=True)
