"""# ready

## Name

*ready* - enables a readiness check HTTP endpoint.

## Description

Serves `/ready` over HTTP on ADDRESS. Each request asks every plugin that can report readiness
(such as *kubernetes*, which is ready once its first list of the API has been loaded) in every
server block that lists `ready` on that address. When all are ready the answer is 200 with body
`OK`; otherwise it is 503 with the names of the plugins that are not ready, sorted and
comma-separated, and an INFO line `Plugins not ready: "kubernetes"` is logged.

Blocks that use the same address share one endpoint. While the process shuts down (lameduck
included) the endpoint answers 503 `Shutting down`, so the pod leaves the Service endpoints
before DNS stops. A reload never makes it answer 503.

Plugins may add informational lines (for example a forwarding loop the *loop* plugin detected);
they follow the status line in the body and never make the endpoint fail.

## Syntax

~~~ txt
ready [ADDRESS] {
    monitor until-ready|continuously
}
~~~

* **ADDRESS** is `host:port` to listen on; default `:8181` (all interfaces).
* `monitor until-ready` (default): once a plugin has reported ready it is never asked again, so
  the endpoint does not go back to 503 if, say, the API connection is lost later.
  `monitor continuously`: ask every plugin on every request.

## Examples

Serve `/ready` on port 8181 of every interface:

~~~ corefile
.:53 {
    ready
    whoami
}
~~~

Two blocks sharing one endpoint on loopback that keeps asking the plugins on every request:

~~~ corefile
example.org:1053 {
    ready 127.0.0.1:8181 {
        monitor continuously
    }
    whoami
}
cluster.local:1053 {
    ready 127.0.0.1:8181
    whoami
}
~~~
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from clusterdns.chain.handler import PluginFactory
from clusterdns.chain.setup import (
    BlockSettings,
    PluginSpec,
    ProcessContext,
    SetupContext,
    address_arg,
)
from clusterdns.corefile import Directive
from clusterdns.webserver import Response

NAME: Final = "ready"
DEFAULT_ADDRESS: Final = ":8181"
PATH: Final = "/ready"
CONTENT_TYPE: Final = "text/plain; charset=utf-8"

log = logging.getLogger(__name__)


class Monitor(enum.Enum):
    """How often a plugin that has reported ready is asked again."""

    UNTIL_READY = "until-ready"
    """Never again once it has reported ready."""
    CONTINUOUSLY = "continuously"
    """On every request."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyConfig:
    """The parsed `ready` directive."""

    address: str = DEFAULT_ADDRESS
    """`host:port` to serve `/ready` on; an empty host means every interface."""
    monitor: Monitor = Monitor.UNTIL_READY
    """Whether a plugin that has reported ready is asked again (default: no)."""


def parse(d: Directive) -> ReadyConfig:
    """Parse one `ready` line and its block.

    Raises:
        CorefileError: a bad address or option, with file and line.
    """
    address = address_arg(d, DEFAULT_ADDRESS)
    monitor = Monitor.UNTIL_READY
    for opt in d.options:
        if opt.name != "monitor":
            raise opt.error(f"unknown option {opt.name!r}")
        (value,) = opt.expect_args(1)
        opt.expect_no_block()
        try:
            monitor = Monitor(value)
        except ValueError as exc:
            choices = ", ".join(m.value for m in Monitor)
            raise opt.error(f"monitor must be one of {choices}, got {value!r}") from exc
    return ReadyConfig(address=address, monitor=monitor)


@dataclass(slots=True)
class Watched:
    """One server block whose plugins an endpoint asks."""

    block: BlockSettings
    monitor: Monitor
    passed: set[int] = field(default_factory=set)
    """Indexes into `block.ready_checks` that reported ready (until-ready only)."""

    def not_ready(self) -> list[str]:
        """Ask this block's checks; return the names of those not ready."""
        names: list[str] = []
        for i, (name, check) in enumerate(self.block.ready_checks):
            if i in self.passed:
                continue
            if check():
                if self.monitor is Monitor.UNTIL_READY:
                    self.passed.add(i)
            else:
                names.append(name)
        return names


class Ready:
    """The `/ready` endpoint of one address, shared by every block that routes it there.

    Loop-thread only: checks and notes are called on the event loop, at request time.
    """

    def __init__(self, process: ProcessContext) -> None:
        self.process = process
        self.watched: list[Watched] = []

    def add(self, block: BlockSettings, monitor: Monitor) -> None:
        """Also ask the plugins of `block` (its checks are read at request time)."""
        self.watched.append(Watched(block, monitor))

    def notes(self) -> list[str]:
        """The informational lines of every watched block, without empty or repeated ones."""
        lines: dict[str, None] = {}
        for w in self.watched:
            for note in w.block.ready_notes:
                text = note().strip()
                if text:
                    lines[text] = None
        return list(lines)

    def status(self) -> tuple[int, str]:
        """Return the HTTP status and the status line of the body."""
        if self.process.shutting_down:
            return 503, "Shutting down"
        names: set[str] = set()
        for w in self.watched:
            names.update(w.not_ready())
        if not names:
            return 200, "OK"
        joined = ",".join(sorted(names))
        log.info('Plugins not ready: "%s"', joined)
        return 503, joined

    async def __call__(self, method: str) -> Response:
        """Answer a request for `/ready` (any method)."""
        status, line = self.status()
        body = "\n".join([line, *self.notes()])
        return status, CONTENT_TYPE, body.encode()


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory | None:
    """Parse `ready` and add this block to the endpoint of its address (setup-only plugin)."""
    config = parse(lines[0])
    listener = ctx.process.http.listeners.get(config.address)
    endpoint = listener.routes.get(PATH) if listener is not None else None
    if not isinstance(endpoint, Ready):
        endpoint = Ready(ctx.process)
        ctx.process.http.route(config.address, PATH, endpoint)
    endpoint.add(ctx.block, config.monitor)
    return None


SPEC: Final = PluginSpec(NAME, setup, once=True, replay_safe=True)
