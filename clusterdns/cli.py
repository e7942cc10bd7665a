"""The command line: CoreDNS's flags, plus `-validate`; load, set up, serve, handle signals.

Flags use Go's syntax (`-conf FILE`, `--conf=FILE`); a Deployment written for the coredns binary
runs unchanged. The whole Corefile is parsed and set up before any socket opens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

from clusterdns.chain.build import Config, build
from clusterdns.chain.fastpath import Generations
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.setup import ProcessContext, Resources
from clusterdns.corefile import parse
from clusterdns.corefile.directive import ServerBlock
from clusterdns.errors import ClusterDNSError, CorefileError, CorefileErrors, ServerError
from clusterdns.metrics import Metrics
from clusterdns.plugins import SETUP
from clusterdns.server import logfmt
from clusterdns.server.lifecycle import Server, version_lines
from clusterdns.server.reloader import Reloading
from clusterdns.server.tcp import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    TCPLimits,
)
from clusterdns.webserver import HTTPRegistry

log = logging.getLogger("clusterdns")

DEFAULT_COREFILE: Final = ".:{port} {{\n    whoami\n    log\n}}\n"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _flags() -> argparse.ArgumentParser:
    p = _Parser(
        prog="clusterdns",
        allow_abbrev=False,
        add_help=True,
        description="Kubernetes cluster DNS server, compatible with CoreDNS.",
    )
    p.add_argument(
        "-conf",
        "--conf",
        dest="conf",
        help="Corefile to load (default ./Corefile; 'stdin' reads standard input)",
    )
    p.add_argument(
        "-dns.port",
        "--dns.port",
        "-p",
        dest="port",
        type=int,
        default=53,
        help="Default port (default 53)",
    )
    p.add_argument("-pidfile", "--pidfile", dest="pidfile", help="File to write the process id to")
    p.add_argument(
        "-plugins",
        "--plugins",
        dest="plugins",
        nargs="?",
        const="true",
        help="List installed plugins",
    )
    p.add_argument(
        "-version", "--version", dest="version", nargs="?", const="true", help="Show version"
    )
    p.add_argument(
        "-quiet",
        "--quiet",
        dest="quiet",
        nargs="?",
        const="true",
        help="Quiet mode (no start-up banner)",
    )
    p.add_argument(
        "-validate",
        "--validate",
        dest="validate",
        nargs="?",
        const="true",
        help="Set up the Corefile without serving; print every error; exit 0 if it would start",
    )
    p.add_argument(
        "-tcp.max-connections",
        "--tcp.max-connections",
        dest="max_tcp",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="Cap on concurrent TCP connections (default 20000)",
    )
    p.add_argument(
        "-tcp.max-connections-per-client",
        "--tcp.max-connections-per-client",
        dest="max_tcp_per_client",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        help="Cap on concurrent TCP connections from one client address (default 256; 0 = none)",
    )
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    return p


def _true(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "t", "yes")


@dataclass
class Loaded:
    """A Corefile's text and the name errors use."""

    text: str
    name: str
    base_dir: str


def load_corefile(conf: str | None, port: int) -> Loaded:
    """Find the Corefile as CoreDNS does: -conf FILE, -conf stdin, ./Corefile, or the default.

    Raises:
        ClusterDNSError: -conf names a file that cannot be read.
    """
    if conf == "stdin":
        return Loaded(sys.stdin.read(), "stdin", os.getcwd())
    if conf is not None:
        try:
            with open(conf, encoding="utf-8") as fh:
                return Loaded(fh.read(), conf, os.path.dirname(os.path.abspath(conf)))
        except OSError as exc:
            raise ClusterDNSError(f"{conf}: {exc.strerror or exc}") from exc
    if os.path.exists("Corefile"):
        with open("Corefile", encoding="utf-8") as fh:
            return Loaded(fh.read(), "Corefile", os.getcwd())
    return Loaded(DEFAULT_COREFILE.format(port=port), "default", os.getcwd())


def setup_config(
    loaded: Loaded,
    port: int,
    metrics: Metrics,
    *,
    validate_only: bool = False,
    reloading: Reloading | None = None,
) -> Config:
    """Parse and set up a Corefile; nothing is opened.

    Raises:
        CorefileError: a syntax error (parsing stops at the first).
        CorefileErrors: every setup error found.
    """
    warnings: list[str] = []
    blocks: list[ServerBlock] = parse(
        loaded.text, loaded.name, DIRECTIVES, base_dir=loaded.base_dir, warnings=warnings
    )
    for w in warnings:
        log.warning("%s", w)
    return setup_blocks(blocks, port, metrics, validate_only=validate_only, reloading=reloading)


def setup_blocks(
    blocks: list[ServerBlock],
    port: int,
    metrics: Metrics,
    *,
    validate_only: bool = False,
    reloading: Reloading | None = None,
    previous: Resources | None = None,
) -> Config:
    """Set parsed server blocks up; nothing is opened.

    `reloading` gives the configuration its reloader (for the `reload` plugin); `previous` is
    the running configuration's resources on a reload, so unchanged ones are taken over.

    Raises:
        CorefileErrors: an unknown directive (blocks read for a reload are parsed without
            checking names), or every setup error found.
    """
    unknown = [
        d.token.error(f"Unknown directive '{d.name}'")
        for block in blocks
        for d in block.directives
        if d.name not in DIRECTIVES
    ]
    if unknown:
        raise CorefileErrors(unknown)
    process = ProcessContext(
        metrics=metrics,
        http=HTTPRegistry(),
        generations=Generations(),
        validate_only=validate_only,
        reloader=reloading.handle(blocks) if reloading is not None else None,
        resources=Resources(previous),
    )
    return build(blocks, specs=SETUP, dns_port=port, process=process)


class _AnyName(Container[str]):
    """Every directive name, as a reload parses.

    A misspelt directive then fails the restart (counted, with file:line) instead of failing to
    parse every period.
    """

    def __contains__(self, name: object) -> bool:
        return True


class CorefileSource:
    """Where the process's Corefile comes from; read again by every reload.

    `-conf stdin` is read once: reloads see that same text.
    """

    def __init__(self, conf: str | None, port: int) -> None:
        self.conf = conf
        self.port = port
        self._stdin: Loaded | None = None
        self._warnings: list[str] = []

    def load(self) -> Loaded:
        """The Corefile's text as `load_corefile` finds it.

        Raises:
            ClusterDNSError: the file cannot be read or is not UTF-8.
        """
        if self.conf == "stdin":
            if self._stdin is None:
                self._stdin = load_corefile(self.conf, self.port)
            return self._stdin
        try:
            return load_corefile(self.conf, self.port)
        except UnicodeDecodeError as exc:
            raise ClusterDNSError(f"{self.conf or 'Corefile'}: not valid UTF-8: {exc}") from exc

    def parse(self, loaded: Loaded, known: Container[str] = DIRECTIVES) -> list[ServerBlock]:
        """Parse loaded text; import warnings are logged when they differ from the last ones.

        Raises:
            CorefileError: a syntax error.
        """
        warnings: list[str] = []
        blocks = parse(loaded.text, loaded.name, known, base_dir=loaded.base_dir, warnings=warnings)
        if warnings != self._warnings:
            for w in warnings:
                log.warning("%s", w)
            self._warnings = warnings
        return blocks

    def read(self) -> list[ServerBlock]:
        """Load and parse again, for a reload (directive names are checked by `setup_blocks`).

        Raises:
            CorefileError: a syntax error.
            ClusterDNSError: the Corefile cannot be read.
        """
        return self.parse(self.load(), _AnyName())


def reloading_for(source: CorefileSource, metrics: Metrics) -> Reloading:
    """The process's reload machinery for a Corefile source."""

    def setup(
        blocks: list[ServerBlock], reloading: Reloading, previous: Resources | None
    ) -> Config:
        return setup_blocks(blocks, source.port, metrics, reloading=reloading, previous=previous)

    return Reloading(source.read, setup)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _flags().parse_args(argv)
    if args.extra:
        print(f"extra command line arguments: {args.extra}", file=sys.stderr)
        return 2
    if _true(args.version):
        print("\n".join(version_lines(os.environ.get("CLUSTERDNS_REVISION", ""))))
        return 0
    if _true(args.plugins):
        print("\n".join(sorted(SETUP)))
        return 0
    logfmt.configure()
    validate = _true(args.validate)
    source = CorefileSource(args.conf, args.port)
    metrics = Metrics(os.environ.get("CLUSTERDNS_REVISION", ""))
    reloading = None if validate else reloading_for(source, metrics)
    try:
        loaded = source.load()
        config = setup_blocks(
            source.parse(loaded), args.port, metrics, validate_only=validate, reloading=reloading
        )
    except CorefileErrors as exc:
        for err in exc.errors:
            print(str(err), file=sys.stderr)
        return 1
    except (CorefileError, ClusterDNSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if reloading is None:
        print(f"{loaded.name}: OK")
        return 0
    limits = TCPLimits(
        max_connections=args.max_tcp, max_connections_per_client=args.max_tcp_per_client
    )
    return _run(config, reloading, args, limits)


def _run(config: Config, reloading: Reloading, args: argparse.Namespace, limits: TCPLimits) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        return asyncio.run(_serve(config, reloading, args, limits))
    result: int = uvloop.run(_serve(config, reloading, args, limits))
    return result


async def _serve(
    config: Config, reloading: Reloading, args: argparse.Namespace, limits: TCPLimits
) -> int:
    server = Server(
        config,
        quiet=_true(args.quiet),
        limits=limits,
        revision=os.environ.get("CLUSTERDNS_REVISION", ""),
        on_up=lambda: _write_pidfile(args.pidfile),
    )
    reloading.attach(server)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    how = {"graceful": True, "sigint": 0}

    def on_term() -> None:
        log.info("SIGTERM: Shutting down servers then terminating")
        stop.set()

    def on_int() -> None:
        how["sigint"] += 1
        if how["sigint"] > 1:
            log.info("SIGINT: Force quit")
            os._exit(2)
        log.info("SIGINT: Shutting down")
        how["graceful"] = False
        stop.set()

    usr1_tasks: set[asyncio.Task[None]] = set()

    def on_usr1() -> None:
        log.info("SIGUSR1: Reloading")
        task = loop.create_task(_sigusr1(server, reloading))
        usr1_tasks.add(task)
        task.add_done_callback(usr1_tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.add_signal_handler(signal.SIGINT, on_int)
    loop.add_signal_handler(signal.SIGQUIT, lambda: os._exit(0))
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    # Handlers are in place before the banner says the server is up.
    try:
        await server.start()
    except ServerError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    tune_gc()
    try:
        await stop.wait()
        for task in usr1_tasks:
            task.cancel()  # a SIGUSR1 reload under way gives up; the running config shuts down
        if usr1_tasks:
            await asyncio.wait(usr1_tasks)
        await server.stop(graceful=bool(how["graceful"]))
    finally:
        if args.pidfile:
            with contextlib.suppress(OSError):
                os.unlink(args.pidfile)
    return 4 if server.hook_failed else 0


GC_THRESHOLDS: Final = (20_000, 20, 20)
"""Collector thresholds while serving (CPython's default is 700, 10, 10)."""


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a server that allocates per query.

    Every query allocates a few hundred short-lived objects that reference counting frees;
    with CPython's default a young-generation collection runs every two or three queries and
    an old-generation one scans the whole watch cache and DNS cache. Objects alive once the
    server is up (modules, configuration, the cluster loaded so far) are moved out of the
    collector's sight (`gc.freeze`), and collections run 30 times less often: memory held by
    cycles waits a little longer, nothing else changes. `CLUSTERDNS_GC=default` keeps
    CPython's settings.
    """
    if os.environ.get("CLUSTERDNS_GC", "") == "default":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _write_pidfile(path: str | None) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")


async def _sigusr1(server: Server, reloading: Reloading) -> None:
    """Reload the Corefile in place (SIGUSR1); on any error the running configuration stays.

    Failures are logged as `SIGUSR1: ...` and not counted in `coredns_reload_failed_total`.
    """
    await server.started.wait()
    try:
        await reloading.reload()
    except ClusterDNSError as exc:
        log.error("SIGUSR1: %s", str(exc).replace("\n", "; "))
