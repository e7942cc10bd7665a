"""Scale benchmark of the kubernetes plugin: first sync, memory, change-to-answer latency.

A synthetic cluster (default 10,000 Services, each with one EndpointSlice of 15 ready endpoints:
150,000 endpoints) is served by the Kubernetes API test double (`tests/k8s/fakeapi.py`) in its
own process, so its memory is not counted. The server runs as the real CLI in another process:

    .:0 {
        bind 127.0.0.1
        ready 127.0.0.1:PORT
        kubernetes cluster.local {
            endpoint http://127.0.0.1:APIPORT
        }
    }

Figures (everything on loopback, every wait bounded):

- first sync: from starting the server process to `/ready` answering 200, polled every 20 ms
  (the `synced with` log line is reported beside it);
- resident memory (RSS) of the server process once synced and listening;
- change-to-answer latency: for each of `--changes` changes made through the test double's
  control port (half update an existing service's cluster IP, half add a new service), the time
  from sending the change to the first UDP answer that shows it, polling the name every ~1 ms;
  p50 and p99.

Targets (issue 3): first sync <= 10 s, RSS <= (endpoints + services) / 1000 + 54 MB (CoreDNS's
sizing rule: 214 MB for the default cluster), change-to-answer p99 <= 100 ms.

    .venv/bin/python bench/k8s_scale.py                       # the full cluster
    .venv/bin/python bench/k8s_scale.py --services 500 --endpoints-per-slice 5 --changes 50

Exit status 0 when the run completed (whatever the figures), 1 when it could not (a process
died or a wait ran out of time), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import math
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import psutil

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.k8s.fakeapi import (  # noqa: E402
    synthetic_namespace,
    synthetic_service,
    synthetic_service_key,
)
from tests.ports import free_tcp_port  # noqa: E402

ZONE: Final = "cluster.local"
READY_POLL_S: Final = 0.020
ANSWER_POLL_S: Final = 0.001
QUERY_TIMEOUT_S: Final = 0.5
STOP_TIMEOUT_S: Final = 10.0
UPDATED_IPS: Final = ipaddress.ip_address("10.100.0.0")
"""Cluster IPs given to updated services (outside the synthetic 10.96.0.0/12 range)."""
NEW_IPS: Final = ipaddress.ip_address("10.101.0.0")
"""Cluster IPs of services added during the run."""

TARGET_SYNC_S: Final = 10.0
TARGET_P99_S: Final = 0.100


class BenchError(Exception):
    """The run could not complete."""


class Budget:
    """The whole run's time limit; every wait takes the smaller of its own and what is left."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        """Seconds a wait may take: at most `cap`, at most what is left (raises when none)."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError("the time budget (--budget) ran out")
        return min(cap, remaining)


@dataclass
class Child:
    """A child process whose merged stdout/stderr lines are read (and timestamped) by a thread."""

    name: str
    proc: subprocess.Popen[bytes]
    lines: list[tuple[float, str]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    @classmethod
    def start(cls, name: str, argv: Sequence[str]) -> Child:
        """Start `argv` in the repository root."""
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        child = cls(name, proc)
        threading.Thread(target=child._read, name=f"read-{name}", daemon=True).start()
        return child

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self.cond:
                self.lines.append((time.perf_counter(), line))
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], timeout_s: float) -> tuple[float, str]:
        """The first line (with the time it was read) satisfying `predicate`.

        Raises:
            BenchError: the process ended first, or no such line came within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for stamp, line in self.lines:
                    if predicate(line):
                        return stamp, line
                if self.closed:
                    raise BenchError(f"{self.name} exited:\n{self.tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"{self.name}: expected line not seen:\n{self.tail()}")
                self.cond.wait(remaining)

    def find(self, predicate: Callable[[str], bool]) -> tuple[float, str] | None:
        """The first line read so far that satisfies `predicate`."""
        with self.cond:
            return next(((t, line) for t, line in self.lines if predicate(line)), None)

    def tail(self, n: int = 20) -> str:
        """The last `n` lines of output."""
        return "\n".join(line for _, line in self.lines[-n:])

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within a few seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)


def ready_status(port: int) -> int | None:
    """The HTTP status of GET /ready, or None when nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", "/ready")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ready(port: int, server: Child, timeout_s: float) -> float:
    """Poll /ready every 20 ms until 200; returns when (perf_counter) it answered 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready_status(port) == 200:
            return time.perf_counter()
        if not server.alive():
            raise BenchError(f"the server exited before it was ready:\n{server.tail()}")
        time.sleep(READY_POLL_S)  # the polling interval of the measurement
    raise BenchError(f"/ready did not answer 200 within {timeout_s:.0f} s:\n{server.tail()}")


def addresses(port: int, qname: str) -> set[str] | None:
    """The A records a UDP query for `qname` gets, or None on no reply / an error rcode."""
    query = dns.message.make_query(qname, dns.rdatatype.A)
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=QUERY_TIMEOUT_S)
    except (dns.exception.DNSException, OSError):
        return None
    if reply.rcode() != dns.rcode.NOERROR:
        return None
    return {rd.to_text() for rrset in reply.answer for rd in rrset if rd.rdtype == dns.rdatatype.A}


def post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> None:
    """One control request to the API test double (keep-alive connection).

    Raises:
        BenchError: it was refused.
    """
    data = json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    answer = resp.read()
    if resp.status != 200:
        raise BenchError(f"control {path}: HTTP {resp.status} {answer.decode(errors='replace')}")


@dataclass(frozen=True)
class Change:
    """One object change and the answer that shows it."""

    kind: str
    obj: dict[str, Any]
    qname: str
    address: str


def planned_changes(n: int, services: int, namespaces: int) -> list[Change]:
    """`n` changes: even ones move an existing service to a new cluster IP, odd ones add one."""
    out: list[Change] = []
    for k in range(n):
        if k % 2 == 0 and services > 0:
            index = (k // 2 * 7919 + 13) % services  # spread over the cluster
            ip = str(UPDATED_IPS + k + 1)
            ns, name = synthetic_service_key(index, namespaces)
            obj = synthetic_service(index, namespaces, cluster_ip=ip)
            out.append(Change("update clusterIP", obj, f"{name}.{ns}.svc.{ZONE}.", ip))
        else:
            ip = str(NEW_IPS + k + 1)
            ns, name = synthetic_namespace(k % namespaces), f"bench-{k:05d}"
            obj = synthetic_service(0, namespaces, cluster_ip=ip)
            obj["metadata"] = {"namespace": ns, "name": name, "labels": {"app": name}}
            obj["spec"]["selector"] = {"app": name}
            out.append(Change("add service", obj, f"{name}.{ns}.svc.{ZONE}.", ip))
    return out


def measure_change(
    conn: http.client.HTTPConnection, dns_port: int, change: Change, timeout_s: float
) -> float | None:
    """Seconds from sending `change` to the first answer holding its address (None: not seen)."""
    start = time.perf_counter()
    post(conn, "/create", change.obj)
    deadline = start + timeout_s
    while True:
        found = addresses(dns_port, change.qname)
        now = time.perf_counter()
        if found is not None and change.address in found:
            return now - start
        if now >= deadline:
            return None
        time.sleep(ANSWER_POLL_S)  # the polling interval of the measurement


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; math.inf for an empty list."""
    if not samples:
        return math.inf
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Figures:
    """What one run measured."""

    services: int
    endpoints: int
    sync_s: float = math.nan
    sync_log_s: float | None = None
    rss_bytes: int = 0
    rss_after_bytes: int = 0
    latencies: list[float] = field(default_factory=list)
    missed: int = 0
    by_kind: dict[str, list[float]] = field(default_factory=dict)


def rss_target_mb(services: int, endpoints: int) -> float:
    """CoreDNS's sizing rule: (pods + services) / 1000 + 54 MB."""
    return (endpoints + services) / 1000 + 54


def table(f: Figures) -> str:
    """The figures beside their targets."""
    mb = 1024 * 1024
    rss_target = rss_target_mb(f.services, f.endpoints)
    samples = f.latencies + [math.inf] * f.missed  # a change never seen counts as endless
    p50, p99 = percentile(samples, 50), percentile(samples, 99)

    def ms(seconds: float) -> str:
        return "timeout" if math.isinf(seconds) else f"{seconds * 1000:.1f} ms"

    def verdict(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    rows = [
        ("figure", "target", "measured", "result"),
        (
            "first sync (start -> /ready 200)",
            f"<= {TARGET_SYNC_S:.0f} s",
            f"{f.sync_s:.2f} s",
            verdict(f.sync_s <= TARGET_SYNC_S),
        ),
        (
            "RSS after sync",
            f"<= {rss_target:.0f} MB",
            f"{f.rss_bytes / mb:.1f} MB",
            verdict(f.rss_bytes / mb <= rss_target),
        ),
        ("change -> answer p50", "-", ms(p50), "-"),
        (
            "change -> answer p99",
            f"<= {TARGET_P99_S * 1000:.0f} ms",
            ms(p99),
            verdict(p99 <= TARGET_P99_S),
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> Figures:
    """Start both processes, measure, and stop them (also on failure)."""
    budget = Budget(args.budget)
    figures = Figures(args.services, args.services * args.endpoints_per_slice)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="k8s-scale-")))
        api = Child.start(
            "fake API",
            [
                sys.executable,
                "-m",
                "tests.k8s.fakeapi",
                "--services",
                str(args.services),
                "--endpoints-per-slice",
                str(args.endpoints_per_slice),
                "--namespaces",
                str(args.namespaces),
            ],
        )
        stack.callback(api.stop)
        _, line = api.wait_line(lambda s: s.startswith("{"), budget.left(300))
        info = json.loads(line)
        control_port = int(info["control"].rsplit(":", 1)[1])
        print(
            f"fake API {info['api']}: {args.namespaces} namespaces, {args.services} services, "
            f"{figures.endpoints} endpoints in {args.services if args.endpoints_per_slice else 0}"
            " EndpointSlices",
            flush=True,
        )

        ready_port = free_tcp_port()
        conf = tmp / "Corefile"
        conf.write_text(
            ".:0 {\n"
            "    bind 127.0.0.1\n"
            f"    ready 127.0.0.1:{ready_port}\n"
            f"    kubernetes {ZONE} {{\n"
            f"        endpoint {info['api']}\n"
            "    }\n"
            "}\n"
        )
        start = time.perf_counter()
        server = Child.start("server", [sys.executable, "-m", "clusterdns", "-conf", str(conf)])
        stack.callback(server.stop)
        ready_at = wait_ready(ready_port, server, budget.left(args.sync_timeout))
        figures.sync_s = ready_at - start
        synced = server.find(lambda s: "synced with" in s)
        figures.sync_log_s = synced[0] - start if synced else None
        _, banner = server.wait_line(lambda s: re.match(r"^\.:\d+", s) is not None, budget.left(60))
        match = re.match(r"^\.:(\d+)", banner)
        assert match is not None
        dns_port = int(match.group(1))
        figures.rss_bytes = psutil.Process(server.proc.pid).memory_info().rss
        print(
            f"server pid {server.proc.pid}: ready after {figures.sync_s:.2f} s, "
            f"DNS on 127.0.0.1:{dns_port}",
            flush=True,
        )

        if args.services:
            ns, name = synthetic_service_key(args.services - 1, args.namespaces)
            got = addresses(dns_port, f"{name}.{ns}.svc.{ZONE}.")
            if not got:
                raise BenchError(f"the last synthetic service does not answer: {got}")

        conn = http.client.HTTPConnection("127.0.0.1", control_port, timeout=30)
        stack.callback(conn.close)
        for change in planned_changes(args.changes, args.services, args.namespaces):
            seconds = measure_change(conn, dns_port, change, budget.left(args.change_timeout))
            if seconds is None:
                figures.missed += 1
            else:
                figures.latencies.append(seconds)
                figures.by_kind.setdefault(change.kind, []).append(seconds)
            if not server.alive():
                raise BenchError(f"the server exited during the changes:\n{server.tail()}")
        figures.rss_after_bytes = psutil.Process(server.proc.pid).memory_info().rss
    return figures


def _terminated(signum: int, frame: object) -> None:
    raise BenchError(f"terminated by signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run once, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, default=10_000, help="default 10000")
    parser.add_argument("--endpoints-per-slice", type=int, default=15, help="default 15")
    parser.add_argument("--namespaces", type=int, default=100, help="default 100")
    parser.add_argument("--changes", type=int, default=200, help="changes timed (default 200)")
    parser.add_argument(
        "--sync-timeout", type=float, default=180, help="longest wait for /ready, s (default 180)"
    )
    parser.add_argument(
        "--change-timeout",
        type=float,
        default=5,
        help="longest wait for one change's answer, s (default 5)",
    )
    parser.add_argument(
        "--budget", type=float, default=900, help="limit for the whole run, s (default 900)"
    )
    args = parser.parse_args(argv)
    if args.services < 0 or args.endpoints_per_slice < 0 or args.namespaces < 1:
        parser.error("sizes must be >= 0 (namespaces >= 1)")
    if args.changes < 0 or args.changes > 100_000:
        parser.error("--changes must be in 0..100000")
    signal.signal(signal.SIGTERM, _terminated)  # stop both child processes on the way out
    try:
        figures = run(args)
    except BenchError as exc:
        print(f"k8s_scale: {exc}", file=sys.stderr)
        return 1
    mb = 1024 * 1024
    print()
    print(table(figures))
    print()
    log_sync = f"{figures.sync_log_s:.2f} s" if figures.sync_log_s is not None else "not seen"
    print(f"'synced with' log line after {log_sync}")
    print(f"RSS after the changes: {figures.rss_after_bytes / mb:.1f} MB")
    for kind, samples in sorted(figures.by_kind.items()):
        print(
            f"{kind}: n={len(samples)} p50 {percentile(samples, 50) * 1000:.1f} ms "
            f"p99 {percentile(samples, 99) * 1000:.1f} ms max {max(samples) * 1000:.1f} ms"
        )
    if figures.missed:
        print(f"{figures.missed} of {args.changes} changes not seen within {args.change_timeout} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
