"""# health

## Name

*health* - enables a process-wide health check endpoint.

## Description

Serves `/health` over HTTP on ADDRESS: any request answers status 200 with body `OK` for as long
as the process runs. It says nothing about Kubernetes sync or upstreams; that is what *ready* is
for. Any other path answers 404.

Health is process-wide: put it in one server block. Several blocks may each have `health` only
with different addresses (they all report the same thing); the same address twice is an error.

Once a second the process fetches its own `/health` (via `localhost` when ADDRESS has no host,
3 s timeout) and records how long that took. A failed fetch is counted and logged as a warning,
and so is a fetch slower than one second.

## Syntax

~~~ txt
health [ADDRESS] {
    lameduck DURATION
}
~~~

* **ADDRESS** is `host:port` to listen on; default `:8080` (all interfaces).
* `lameduck` delays shutdown by DURATION (Go syntax, e.g. `5s`): DNS keeps being served and
  `/health` keeps answering 200 while `/ready` already reports the process as going away. When
  several blocks set it, the longest duration wins.

## Examples

Serve `/health` on port 8080 of every interface, with the kubeadm lameduck of 5 seconds:

~~~ corefile
.:53 {
    health {
        lameduck 5s
    }
    whoami
}
~~~

Two server blocks, each with its own health endpoint on loopback:

~~~ corefile
example.org:1053 {
    health 127.0.0.1:8080
    whoami
}
cluster.local:1053 {
    health 127.0.0.1:8081
    whoami
}
~~~

## Metrics

* `coredns_health_request_duration_seconds{}` - histogram of the self-check fetch duration
  (buckets 0.00025, 0.0025, 0.025, 0.25, 2.5).
* `coredns_health_request_failures_total{}` - self-check fetches that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.chain.handler import PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext, address_arg
from clusterdns.corefile import Directive
from clusterdns.dnsutil.duration import parse_duration
from clusterdns.metrics import NAMESPACE, Counter, Histogram, Metrics
from clusterdns.webserver import HTTPListener, HTTPRegistry, Response, split_address

NAME: Final = "health"
DEFAULT_ADDRESS: Final = ":8080"
PATH: Final = "/health"
CONTENT_TYPE: Final = "text/plain; charset=utf-8"
CHECK_INTERVAL_S: Final = 1.0
CHECK_TIMEOUT_S: Final = 3.0
SLOW_CHECK_S: Final = 1.0
BUCKETS: Final = (0.00025, 0.0025, 0.025, 0.25, 2.5)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """The parsed `health` directive."""

    address: str = DEFAULT_ADDRESS
    """`host:port` to serve `/health` on; an empty host means every interface."""
    lameduck_s: float = 0.0
    """Seconds to keep serving after a shutdown signal; 0 (default) means none."""


def parse(d: Directive) -> HealthConfig:
    """Parse one `health` line and its block.

    Raises:
        CorefileError: a bad address, duration or option, with file and line.
    """
    address = address_arg(d, DEFAULT_ADDRESS)
    lameduck_s = 0.0
    for opt in d.options:
        if opt.name != "lameduck":
            raise opt.error(f"unknown option {opt.name!r}")
        (value,) = opt.expect_args(1)
        opt.expect_no_block()
        try:
            lameduck_s = parse_duration(value)
        except ValueError as exc:
            raise opt.error(f"unable to parse lameduck duration value {value!r}: {exc}") from exc
        if lameduck_s < 0:
            raise opt.error(f"lameduck duration must not be negative, got {value!r}")
    return HealthConfig(address=address, lameduck_s=lameduck_s)


@dataclass(frozen=True, slots=True)
class HealthMetrics:
    """The self-check series; one set per process-wide Metrics, shared by every health instance."""

    duration: Histogram
    failures: Counter


def _make_metrics(metrics: Metrics) -> HealthMetrics:
    """Build and register the series (once per process, through `Metrics.shared`)."""
    duration = Histogram(
        f"{NAMESPACE}_health_request_duration_seconds",
        "Histogram of the time (in seconds) each request took.",
        (),
        BUCKETS,
    )
    failures = Counter(
        f"{NAMESPACE}_health_request_failures_total",
        "The number of times the health check failed.",
    )
    failures.inc((), 0)
    metrics.register(duration, failures)
    found = HealthMetrics(duration, failures)
    return found


def health_metrics(metrics: Metrics) -> HealthMetrics:
    """Return the health series registered on `metrics`, registering them on first use.

    Metrics outlive a reload, so a second setup reuses the series instead of publishing them twice.
    """
    return metrics.shared("health", _make_metrics)


async def handle(method: str) -> Response:
    """Answer a request for `/health` (any method): 200 `OK`."""
    return 200, CONTENT_TYPE, b"OK"


class Health:
    """The once-a-second self-check of one `/health` endpoint. Loop-thread only."""

    def __init__(self, config: HealthConfig, http: HTTPRegistry, metrics: HealthMetrics) -> None:
        self.config = config
        self.http = http
        self.metrics = metrics
        self.task: asyncio.Task[None] | None = None

    @property
    def listener(self) -> HTTPListener | None:
        """The listener serving our address (looked up each time: a reload may keep an old one)."""
        return self.http.listeners.get(self.config.address)

    @property
    def serving(self) -> bool:
        """Whether the listener is bound (it is not before start-up or once shutdown began)."""
        listener = self.listener
        return listener is not None and listener.server is not None

    def target(self) -> tuple[str, int]:
        """The host and port the self-check fetches: `localhost` when the address has none.

        The bound port is used once the listener runs (so port 0 works in tests).
        """
        host, port = split_address(self.config.address)
        listener = self.listener
        return host or "localhost", (listener.port if listener is not None else 0) or port

    async def fetch(self) -> int:
        """GET our own `/health` once and return the HTTP status.

        Raises:
            OSError: the connection failed.
            ValueError: the reply is not HTTP.
        """
        host, port = self.target()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"GET {PATH} HTTP/1.1\r\nHost: {_authority(host, port)}\r\n"
                "User-Agent: clusterdns-health\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            status_line = await reader.readline()
            await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        parts = status_line.split(maxsplit=2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP status line: {status_line[:80]!r}")
        return int(parts[1])

    async def check(self) -> bool:
        """Run one self-check: fetch `/health` within 3 s, record the duration and any failure."""
        start = time.perf_counter()
        error = ""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                status = await self.fetch()
            if status != 200:
                error = f"status {status}"
        except TimeoutError:
            error = f"no reply within {CHECK_TIMEOUT_S:g}s"
        except (OSError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        self.record(time.perf_counter() - start, error)
        return not error

    def record(self, duration_s: float, error: str) -> None:
        """Record one self-check that took `duration_s` and failed with `error` (empty: success)."""
        self.metrics.duration.observe((), duration_s)
        url = self.url()
        if error:
            self.metrics.failures.inc(())
            log.warning("Local health request to %s failed: %s", url, error)
        elif duration_s > SLOW_CHECK_S:
            log.warning("Local health request to %s took more than 1s: %.3fs", url, duration_s)

    def url(self) -> str:
        """The URL the self-check fetches (for log lines)."""
        return f"http://{_authority(*self.target())}{PATH}"

    async def run(self) -> None:
        """Self-check once a second while the listener is bound, until cancelled."""
        while True:
            if self.serving:
                await self.check()
            await asyncio.sleep(CHECK_INTERVAL_S)

    async def start(self) -> None:
        """Start the self-check loop in the background (startup hook)."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(
                self.run(), name=f"health self-check {self.config.address}"
            )

    async def stop(self) -> None:
        """Cancel the self-check loop and wait for it to end (shutdown hook)."""
        task, self.task = self.task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory | None:
    """Parse `health`, route `/health` and register the self-check hooks (setup-only plugin).

    As in CoreDNS, of several `health` lines in one block the last one takes effect.
    """
    for line in lines[:-1]:
        parse(line)  # still validated, so a typo in an overridden line is reported
    d = lines[-1]
    config = parse(d)
    existing = ctx.process.http.listeners.get(config.address)
    if existing is not None and PATH in existing.routes:
        raise d.error(f"address {config.address} already has a health endpoint in another block")
    ctx.process.http.route(config.address, PATH, handle)
    health = Health(config, ctx.process.http, health_metrics(ctx.metrics))
    ctx.process.lameduck_s = max(ctx.process.lameduck_s, config.lameduck_s)
    ctx.on_startup(health.start)
    ctx.on_shutdown(health.stop)
    return None


SPEC: Final = PluginSpec(NAME, setup, replay_safe=True)
