"""Soak: a steady realistic load for minutes, with cluster churn and reloads; nothing may be lost.

    .venv/bin/python bench/soak.py                  # 10 minutes at 50 % of measured capacity
    .venv/bin/python bench/soak.py --minutes 2 --qps 1500

Three child processes on loopback: the Kubernetes API test double (`tests.k8s.fakeapi`, a
synthetic cluster of `--services` Services plus the reference cluster), a scripted upstream
(`tests.upstream`) and the server (the real command line) running the kubeadm Corefile with
`endpoint` pointing at the test double and `forward` at the upstream. This process is the client.

1. Capacity: a closed loop (`--outstanding` queries always in flight) for `--capacity-seconds`
   on the query mix, with the churn running (each change invalidates the cluster zones' fast-
   path replies: without it the capacity would be that of a cluster that never changes); the
   answered rate is the capacity. `--qps` skips this.
2. Warm-up, so that the start figures are those of a server in its steady state: every distinct
   query of the mix once, a reload (SIGUSR1: the fast-path tables are rebuilt), every distinct
   query again, then the mix until `--warmup` seconds have passed, with the churn running
   throughout. Only then are the start RSS and open fds taken (the report says so).
3. Soak: an open loop at `--load` (default 50 %) of the capacity for `--minutes`, on the mix:
   cluster A hits, AAAA (NODATA) and SRV of the same Services, ndots:5 search-path NXDOMAINs,
   external names through `forward`, PTR of Service addresses, and names of Services being
   churned. Meanwhile 10 objects/s change through the test double's control port (Services
   created, re-addressed, deleted) and the server reloads every minute (SIGUSR1).
4. Every reply is checked against the expected state at send time; for a churned name the state
   of any moment between sending and receiving counts, and one from up to `--lag` seconds
   before sending (the server may not have seen the latest change yet) counts as "stale", not
   wrong. A query unanswered after 2 s is lost.

Report: queries sent, answered, by rcode, lost, wrong, stale, latency, server RSS and open file
descriptors at start and end, reloads, the machine's load average. Lost queries are split by
where they were lost, from the kernel's per-socket drop counters (/proc/PID/net/udp): dropped at
the server's full receive buffer (the server did not read in time), dropped at the client's
own sockets (the harness, not the server), answered after 2 s, or never answered by the server.
Pass: 0 lost at or in the server, 0 wrong, RSS growth < 5 %, fds flat (replies the client's
own sockets dropped are reported and do not fail the run). Exit status: 0 pass, 1 fail, 2 the
run could not be completed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import ipaddress
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psutil

ROOT: Final = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.k8s.fakeapi import (  # noqa: E402
    synthetic_service_ip,
    synthetic_service_key,
)
from tests.ports import free_udp_tcp_port  # noqa: E402

REFERENCE_YAML: Final = ROOT / "tests" / "fixtures" / "k8s" / "reference.yaml"
LOST_AFTER_S: Final = 2.0
SOCKETS: Final = 16
SO_RCVBUFFORCE: Final = 33
"""Linux: set the receive buffer beyond rmem_max (root); the socket module does not name it."""
CAPACITY_LEAD_S: Final = 5.0
"""Closed-loop seconds before the capacity is measured (the fast path fills meanwhile)."""
SWEEP_QPS: Final = 2000.0
"""Rate of the warm-up's sweeps of every distinct query (each one a miss)."""
CLIENT_RCVBUF: Final = 4 << 20
"""Each client socket's receive buffer: the client's own drops are not under test."""
CHURN_NS: Final = "churn"
CHURN_NET: Final = ipaddress.ip_network("10.110.0.0/16")
EXTERNAL: Final = {
    "example.com.": "93.184.215.14",
    "db.example.com.": "192.0.2.50",
    **{f"ext{i}.example.net.": f"198.51.100.{i}" for i in range(1, 21)},
}
A, AAAA, SRV, PTR = 1, 28, 33, 12
NOERROR, NXDOMAIN = 0, 3
RCODES: Final = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}


class SoakError(Exception):
    """The run could not be completed."""


# -- child processes ------------------------------------------------------------------------------
@dataclass
class Child:
    """A child process whose output lines are collected by a thread."""

    name: str
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, name: str, argv: Sequence[str]) -> Child:
        proc = subprocess.Popen(
            list(argv), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        child = cls(name, proc)
        threading.Thread(target=child._read, daemon=True, name=f"read-{name}").start()
        return child

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()

    def wait_line(self, pattern: str, timeout_s: float, after: int = 0) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for line in self.lines[after:]:
                    if rx.search(line):
                        return line
                if self.proc.poll() is not None:
                    raise SoakError(f"{self.name} exited: {self.lines[-20:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SoakError(f"{self.name}: no line {pattern!r}: {self.lines[-20:]}")
                self.cond.wait(left)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 now."""
    try:
        return free_udp_tcp_port()
    except RuntimeError as exc:
        raise SoakError(str(exc)) from None


def corefile(port: int, side: int, api: str, upstream: str) -> str:
    """The kubeadm Corefile (spec §0.3, new cache form), on loopback, against the doubles."""
    return f"""\
.:{port} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{side}
    ready 127.0.0.1:{side}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        endpoint {api}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus 127.0.0.1:{side}
    forward . {upstream} {{
        max_concurrent 1000
    }}
    cache 30 {{
        disable success cluster.local
        disable denial cluster.local
    }}
    loop
    loadbalance
}}
"""


def post(control: str, path: str, body: dict[str, object]) -> None:
    host, port = control.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        data = json.dumps(body).encode()
        conn.request("POST", path, data, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SoakError(f"control {path}: HTTP {resp.status}")
    finally:
        conn.close()


def ready(side: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", side, timeout=2)
    try:
        conn.request("GET", "/ready")
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except OSError:
        return False
    finally:
        conn.close()


# -- wire helpers ---------------------------------------------------------------------------------
def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def query_wire(qid: int, name: str, qtype: int) -> bytes:
    return (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, 1)
    )


def read_name(data: bytes, off: int) -> tuple[str, int]:
    """(lower-case absolute name, offset after it) of a (possibly compressed) name; bounded."""
    labels: list[str] = []
    end = -1
    for _ in range(128):
        length = data[off]
        if length & 0xC0 == 0xC0:
            if end < 0:
                end = off + 2
            off = ((length & 0x3F) << 8) | data[off + 1]
            continue
        if length == 0:
            return (".".join(labels) + ".").lower(), (end if end >= 0 else off + 1)
        labels.append(data[off + 1 : off + 1 + length].decode("latin-1"))
        off += 1 + length
    raise ValueError("pointer loop")


@dataclass(frozen=True)
class Reply:
    rcode: int
    tc: bool
    answers: tuple[tuple[int, str], ...]
    """(type, value): A/AAAA address text, PTR target, SRV `port target`, CNAME target."""


def parse_reply(data: bytes) -> Reply:
    _, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", data)
    off = 12
    for _ in range(qd):
        _, off = read_name(data, off)
        off += 4
    out: list[tuple[int, str]] = []
    for _ in range(an):
        _, off = read_name(data, off)
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", data, off)
        off += 10
        rdata = data[off : off + rdlen]
        if rtype == A:
            out.append((A, str(ipaddress.IPv4Address(rdata))))
        elif rtype == AAAA:
            out.append((AAAA, str(ipaddress.IPv6Address(rdata))))
        elif rtype in (PTR, 5):
            out.append((rtype, read_name(data, off)[0]))
        elif rtype == SRV:
            port = struct.unpack_from("!H", data, off + 4)[0]
            out.append((SRV, f"{port} {read_name(data, off + 6)[0]}"))
        off += rdlen
    return Reply(flags & 0xF, bool(flags & 0x0200), tuple(out))


# -- the expected state ---------------------------------------------------------------------------
Check = Callable[[Reply, float, float], str]
"""(reply, sent at, received at) -> "ok", "stale" or a description of what is wrong."""


class Churn:
    """Services in namespace `churn` created, re-addressed and deleted via the control port."""

    def __init__(self, control: str, seed: int = 8) -> None:
        self.control = control
        self.random = random.Random(seed)
        self.history: dict[str, list[tuple[float, str | None]]] = {}
        """name -> [(time the API held it, address or None)]."""
        self.next_ip = 0
        self.objects = 0
        self.names = [f"c{i:03d}" for i in range(60)]
        post(control, "/create", {"kind": "Namespace", "metadata": {"name": CHURN_NS}})

    def state(self, name: str, at: float) -> str | None:
        value: str | None = None
        for t, v in self.history.get(name, ()):
            if t > at:
                break
            value = v
        return value

    def states_between(self, name: str, start: float, end: float) -> set[str | None]:
        out = {self.state(name, start)}
        out.update(v for t, v in self.history.get(name, ()) if start < t <= end)
        return out

    def step(self) -> None:
        name = self.random.choice(self.names)
        current = self.state(name, time.monotonic())
        # The transition is recorded before the API has it: a reply showing it can only come
        # later, and a reply still showing the previous state after this moment is "stale".
        history = self.history.setdefault(name, [])
        if current is not None and self.random.random() < 0.3:
            history.append((time.monotonic(), None))
            post(self.control, "/delete", {"kind": "Service", "namespace": CHURN_NS, "name": name})
        else:
            self.next_ip += 1
            value = str(CHURN_NET.network_address + self.next_ip)
            history.append((time.monotonic(), value))
            body: dict[str, object] = {
                "kind": "Service",
                "metadata": {"namespace": CHURN_NS, "name": name},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": value,
                    "clusterIPs": [value],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            }
            post(self.control, "/create", body)
        self.objects += 1

    def check(self, name: str, lag_s: float) -> Check:
        def check(reply: Reply, sent: float, received: float) -> str:
            got: str | None = None
            if reply.rcode == NXDOMAIN:
                got = None
            elif reply.rcode == NOERROR and [v for t, v in reply.answers if t == A]:
                got = next(v for t, v in reply.answers if t == A)
            else:
                return f"{name}: rcode {RCODES.get(reply.rcode, reply.rcode)} {reply.answers}"
            if got in self.states_between(name, sent, received):
                return "ok"
            if got in self.states_between(name, sent - lag_s, received):
                return "stale"
            return f"{name}: got {got}, expected one of {self.states_between(name, sent, received)}"

        return check


def expect(rcode: int, answers: set[tuple[int, str]] | None = None) -> Check:
    def check(reply: Reply, sent: float, received: float) -> str:
        if reply.rcode != rcode:
            return f"rcode {RCODES.get(reply.rcode, reply.rcode)}, want {RCODES[rcode]}"
        if answers is not None and set(reply.answers) != answers:
            return f"answers {sorted(reply.answers)}, want {sorted(answers)}"
        return "ok"

    return check


@dataclass(frozen=True)
class Planned:
    kind: str
    name: str
    qtype: int
    check: Check


class Mix:
    """The query mix; `next()` draws one query (deterministic for a seed)."""

    WEIGHTS: Final = {
        "cluster-a": 35, "cluster-aaaa": 10, "cluster-srv": 10, "ndots-nxdomain": 15,
        "external": 10, "ptr": 10, "churned": 10,
    }  # fmt: skip

    def __init__(self, services: int, namespaces: int, churn: Churn | None, lag_s: float) -> None:
        self.services = services
        self.namespaces = namespaces
        self.churn = churn
        self.lag_s = lag_s
        self.random = random.Random(5)
        kinds = [k for k in self.WEIGHTS if churn is not None or k != "churned"]
        self.kinds = kinds
        self.weights = [self.WEIGHTS[k] for k in kinds]
        self.sweep: list[Planned] = []
        """Queries `next()` hands out before drawing (the warm-up's sweep of the key space)."""

    def _service(self) -> tuple[str, str]:
        i = self.random.randrange(self.services)
        ns, name = synthetic_service_key(i, self.namespaces)
        return f"{name}.{ns}.svc.cluster.local.", synthetic_service_ip(i)

    def every(self) -> list[Planned]:
        """Each distinct query of the mix once (the churned names aside): the warm-up sweep."""
        out: list[Planned] = []
        for i in range(self.services):
            ns, svc = synthetic_service_key(i, self.namespaces)
            name, ip = f"{svc}.{ns}.svc.cluster.local.", synthetic_service_ip(i)
            rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa."
            out.append(Planned("cluster-a", name, A, expect(NOERROR, {(A, ip)})))
            out.append(Planned("cluster-aaaa", name, AAAA, expect(NOERROR, set())))
            srv = {(SRV, f"80 {name}")}
            out.append(Planned("cluster-srv", f"_http._tcp.{name}", SRV, expect(NOERROR, srv)))
            out.append(Planned("ptr", rev, PTR, expect(NOERROR, {(PTR, name)})))
            for n in range(self.namespaces):
                probe = f"{name}ns-{n:03d}.svc.cluster.local."
                out.append(Planned("ndots-nxdomain", probe, A, expect(NXDOMAIN)))
        for n in range(self.namespaces):
            for probe in ("db.example.com.", "kubernetes.default."):
                name = f"{probe}ns-{n:03d}.svc.cluster.local."
                out.append(Planned("ndots-nxdomain", name, A, expect(NXDOMAIN)))
        for name, ip in EXTERNAL.items():
            out.append(Planned("external", name, A, expect(NOERROR, {(A, ip)})))
        return out

    def next(self) -> Planned:
        if self.sweep:
            return self.sweep.pop()
        kind = self.random.choices(self.kinds, self.weights)[0]
        if kind == "cluster-a":
            name, ip = self._service()
            return Planned(kind, name, A, expect(NOERROR, {(A, ip)}))
        if kind == "cluster-aaaa":
            name, _ = self._service()
            return Planned(kind, name, AAAA, expect(NOERROR, set()))
        if kind == "cluster-srv":
            name, _ = self._service()
            return Planned(kind, f"_http._tcp.{name}", SRV, expect(NOERROR, {(SRV, f"80 {name}")}))
        if kind == "ndots-nxdomain":
            name, _ = self._service()
            ns = f"ns-{self.random.randrange(self.namespaces):03d}"
            probe = self.random.choice([name, "db.example.com.", "kubernetes.default."])
            return Planned(kind, f"{probe}{ns}.svc.cluster.local.", A, expect(NXDOMAIN))
        if kind == "external":
            name = self.random.choice(sorted(EXTERNAL))
            return Planned(kind, name, A, expect(NOERROR, {(A, EXTERNAL[name])}))
        if kind == "ptr":
            name, ip = self._service()
            rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa."
            return Planned(kind, rev, PTR, expect(NOERROR, {(PTR, name)}))
        assert self.churn is not None
        short = self.random.choice(self.churn.names)
        fqdn = f"{short}.{CHURN_NS}.svc.cluster.local."
        return Planned(kind, fqdn, A, self.churn.check(short, self.lag_s))


# -- the client -----------------------------------------------------------------------------------
@dataclass
class Figures:
    sent: int = 0
    answered: int = 0
    lost: int = 0
    wrong: int = 0
    stale: int = 0
    truncated: int = 0
    rcodes: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wrongs: list[str] = field(default_factory=list)
    """The first wrong answers (kept apart: lost queries fill `problems` first)."""
    lost_at: list[float] = field(default_factory=list)
    """Monotonic send times of the lost queries (to line them up with reloads)."""
    late: int = 0
    """Replies that came after their query had been counted lost (the server answered > 2 s)."""


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, client: Client, index: int) -> None:
        self.client = client
        self.index = index
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.client.received(self.index, data)


class Client:
    """Queries over `SOCKETS` UDP sockets, matched by (socket, ID), lost after 2 s."""

    def __init__(self, port: int, mix: Mix) -> None:
        self.port = port
        self.mix = mix
        self.figures = Figures()
        self.socks: list[_Socket] = []
        self.pending: dict[tuple[int, int], tuple[float, Planned]] = {}
        self.next_id = [0] * SOCKETS
        self.turn = 0
        self.answered_event = asyncio.Event()
        self.rcvbuf = 0
        """The receive buffer each client socket got (as the kernel reports it)."""

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(SOCKETS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:  # beyond net.core.rmem_max when root; else as much as rmem_max allows
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CLIENT_RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
            self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            sock.connect(("127.0.0.1", self.port))
            _, proto = await loop.create_datagram_endpoint(
                functools.partial(_Socket, self, i), sock=sock
            )
            self.socks.append(proto)

    def close(self) -> None:
        for s in self.socks:
            if s.transport is not None:
                s.transport.close()

    def send(self) -> None:
        planned = self.mix.next()
        i = self.turn = (self.turn + 1) % SOCKETS
        qid = self.next_id[i] = (self.next_id[i] + 1) & 0xFFFF
        if (i, qid) in self.pending:  # 65536 in flight on one socket cannot happen at 2 s
            return
        sock = self.socks[i]
        assert sock.transport is not None
        self.pending[(i, qid)] = (time.monotonic(), planned)
        sock.transport.sendto(query_wire(qid, planned.name, planned.qtype))
        self.figures.sent += 1
        self.figures.by_kind[planned.kind] += 1

    def received(self, index: int, data: bytes) -> None:
        now = time.monotonic()
        if len(data) < 12:
            return
        qid = struct.unpack_from("!H", data)[0]
        entry = self.pending.pop((index, qid), None)
        if entry is None:
            self.figures.late += 1  # a late reply to a query already counted lost
            return
        sent, planned = entry
        f = self.figures
        f.answered += 1
        f.latencies.append(now - sent)
        try:
            reply = parse_reply(data)
        except (ValueError, IndexError, struct.error) as exc:
            f.wrong += 1
            if len(f.wrongs) < 20:
                f.wrongs.append(f"{planned.name}: unparsable reply ({exc})")
            return
        f.rcodes[RCODES.get(reply.rcode, str(reply.rcode))] += 1
        f.truncated += reply.tc
        verdict = planned.check(reply, sent, now)
        if verdict == "stale":
            f.stale += 1
        elif verdict != "ok":
            f.wrong += 1
            if len(f.wrongs) < 20:
                f.wrongs.append(
                    f"{planned.kind} {planned.name} (sent {sent:.3f}, answered after "
                    f"{(now - sent) * 1000:.1f} ms): {verdict}"
                )
        self.answered_event.set()

    def _problem(self, text: str) -> None:
        if len(self.figures.problems) < 20:
            self.figures.problems.append(text)

    def sweep(self) -> None:
        limit = time.monotonic() - LOST_AFTER_S
        for key, (sent, planned) in list(self.pending.items()):
            if sent < limit:
                del self.pending[key]
                self.figures.lost += 1
                self.figures.lost_at.append(sent)
                self._problem(f"lost: {planned.kind} {planned.name}")

    async def drain(self) -> None:
        deadline = time.monotonic() + LOST_AFTER_S + 0.5
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.sweep()


async def closed_loop(
    client: Client, outstanding: int, seconds: float, tick: Callable[[], None]
) -> tuple[float, list[float]]:
    """Keep `outstanding` queries in flight for `seconds`.

    Returns the answered rate over the whole time and the rates of its 5-second windows.
    """
    start = time.monotonic()
    before = client.figures.answered
    windows: list[float] = []
    window_start, window_before = start, before
    while time.monotonic() - start < seconds:
        while len(client.pending) < outstanding:
            client.send()
        client.answered_event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.answered_event.wait(), 0.5)
        client.sweep()
        tick()
        now = time.monotonic()
        if now - window_start >= 5.0:
            windows.append((client.figures.answered - window_before) / (now - window_start))
            window_start, window_before = now, client.figures.answered
    took = time.monotonic() - start
    rate = (client.figures.answered - before) / took
    await client.drain()
    return rate, windows or [rate]


async def open_loop(
    client: Client, qps: float, seconds: float, tick: Callable[[float], None]
) -> None:
    """Send at `qps` for `seconds` (batches every 5 ms, catching up after a stall)."""
    start = time.monotonic()
    sent = 0
    last_sweep = start
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= seconds:
            break
        due = int(elapsed * qps)
        while sent < due:
            client.send()
            sent += 1
        if now - last_sweep > 0.1:
            client.sweep()
            last_sweep = now
        tick(elapsed)
        await asyncio.sleep(0.005)  # pacing of the open loop
    await client.drain()


# -- the run --------------------------------------------------------------------------------------
@dataclass
class Sample:
    at_s: float
    rss_mb: float
    fds: int


def sample(pid: int, at_s: float) -> Sample:
    p = psutil.Process(pid)
    return Sample(at_s, p.memory_info().rss / 2**20, p.num_fds())


def server_metric(side: int, family: str) -> str:
    """Every sample of a metric family from the server's /metrics, as `labels=value` text."""
    conn = http.client.HTTPConnection("127.0.0.1", side, timeout=5)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    except OSError as exc:
        return f"unavailable ({exc})"
    finally:
        conn.close()
    found = [ln for ln in body.splitlines() if ln.startswith(family)]
    return ", ".join(ln[len(family) :] for ln in found)


def socket_drops(pid: int) -> int:
    """Datagrams the kernel dropped on `pid`'s UDP sockets because the receive buffer was full.

    Read from the `drops` column of /proc/PID/net/udp and udp6 for the process's socket inodes.
    """
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    total = 0
    for table in ("udp", "udp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 13 and fields[9] in inodes:
                total += int(fields[12])
    return total


def udp_errors() -> dict[str, int]:
    """The kernel's UDP counters (receive-buffer drops show as RcvbufErrors)."""
    lines = [
        ln.split()
        for ln in Path("/proc/net/snmp").read_text().splitlines()
        if ln.startswith("Udp:")
    ]
    return dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def soak(args: argparse.Namespace) -> int:
    children: list[Child] = []
    folder = Path(tempfile.mkdtemp(prefix="clusterdns-soak-"))
    try:
        api = Child.start("fakeapi", [
            sys.executable, "-m", "tests.k8s.fakeapi", "--services", str(args.services),
            "--namespaces", str(args.namespaces), "--endpoints-per-slice", "3",
            "--yaml", str(REFERENCE_YAML),
        ])  # fmt: skip
        children.append(api)
        urls = json.loads(api.wait_line(r'^\{"api"', 120))
        records = [f"{n} 300 IN A {ip}" for n, ip in EXTERNAL.items() if n.startswith("ext")]
        up_port = free_port()
        upstream = Child.start("upstream", [
            sys.executable, "-m", "tests.upstream", "--host", "127.0.0.1", "--port", str(up_port),
            *[arg for r in records for arg in ("--record", r)],
        ])  # fmt: skip
        children.append(upstream)
        upstream.wait_line(r"^listening on", 60)
        port, side = free_port(), free_port()
        conf = folder / "Corefile"
        conf.write_text(corefile(port, side, urls["api"], f"127.0.0.1:{up_port}"))
        server = Child.start("server", [sys.executable, "-m", "clusterdns", "-conf", str(conf)])
        children.append(server)
        deadline = time.monotonic() + 120
        while not ready(side):
            if server.proc.poll() is not None or time.monotonic() > deadline:
                raise SoakError(f"the server did not become ready: {server.lines[-20:]}")
            await asyncio.sleep(0.05)
        pid = server.proc.pid
        print(
            f"server pid {pid} on 127.0.0.1:{port}; {args.services} synthetic Services "
            f"+ the reference cluster; upstream 127.0.0.1:{up_port}",
            flush=True,
        )

        print(f"machine: {machine_load()}", flush=True)
        first = sample(pid, 0.0)
        loop = asyncio.get_running_loop()
        churn = Churn(urls["control"])

        # Churn at --churn objects/s from now to the end (capacity probe and warm-up
        # included): every change invalidates the kubernetes zones' fast-path replies, so a
        # capacity measured without it would be that of a server that never sees a change.
        # The load loops' ticks hand out the steps; a worker thread posts them to the double.
        churn_start = time.monotonic()
        churn_due = [0]

        def churn_tick() -> None:
            due = int((time.monotonic() - churn_start) * args.churn)
            if due > churn_due[0]:
                churn_due[0] = due

        async def churner() -> None:
            done = 0
            while True:
                if done < churn_due[0]:
                    done += 1
                    await loop.run_in_executor(None, churn.step)
                else:
                    await asyncio.sleep(0.01)  # pacing: the load loops hand out churn steps

        churning = loop.create_task(churner())

        if args.qps:
            qps = float(args.qps)
            capacity_text = "not measured (--qps)"
        else:
            probe = Client(port, Mix(args.services, args.namespaces, churn, args.lag))
            await probe.open()
            await closed_loop(probe, args.outstanding, CAPACITY_LEAD_S, churn_tick)
            capacity, windows = await closed_loop(
                probe, args.outstanding, args.capacity_seconds, churn_tick
            )
            probe.close()
            qps = capacity * args.load
            capacity_text = (
                f"{capacity:,.0f} answered/s (closed loop, {args.outstanding} in flight, "
                f"{args.capacity_seconds:.0f} s after {CAPACITY_LEAD_S:.0f} s unmeasured, the mix "
                f"and the churn; 5-s windows {min(windows):,.0f}-{max(windows):,.0f}/s; "
                f"{probe.figures.lost} lost)"
            )
            print(f"capacity: {capacity_text}; soak rate {qps:.0f}/s ({args.load:.0%})", flush=True)

        reloads = {"sent": 0, "done": 0, "failed": 0}
        pending_reload: list[asyncio.Future[None]] = []

        def reload_now(at_s: float) -> asyncio.Future[None]:
            print(f"  reload (SIGUSR1) at {at_s:.1f} s", flush=True)
            mark = len(server.lines)
            server.proc.send_signal(signal.SIGUSR1)
            reloads["sent"] += 1

            def wait() -> None:
                try:
                    line = server.wait_line(
                        r"Reloading complete|\[ERROR\] SIGUSR1: ", 60, after=mark
                    )
                    reloads["done" if "complete" in line else "failed"] += 1
                except SoakError:
                    reloads["failed"] += 1

            fut = loop.run_in_executor(None, wait)
            pending_reload.append(fut)
            return fut

        # Warm-up: the start figures are taken once every bounded table the mix fills (the
        # fast path, rebuilt on each reload; the kubernetes record builders' caches; `cache`)
        # holds its working set, and after a reload, as every later minute of the soak has.
        mix = Mix(args.services, args.namespaces, churn, args.lag)
        warm = Client(port, mix)
        await warm.open()
        warm_start = time.monotonic()
        distinct = len(mix.every())
        # Sweeps are all misses, answered by the full chain: at most SWEEP_QPS, not at a rate
        # the fast path sustains.
        sweep_qps = min(qps, SWEEP_QPS)
        sweep_s = distinct / sweep_qps + 1.0
        mix.sweep = mix.every()
        await open_loop(warm, sweep_qps, sweep_s, lambda elapsed: churn_tick())
        await reload_now(time.monotonic() - warm_start)
        mix.sweep = mix.every()
        await open_loop(warm, sweep_qps, sweep_s, lambda elapsed: churn_tick())
        rest_s = max(10.0, args.warmup - (time.monotonic() - warm_start))
        await open_loop(warm, qps, rest_s, lambda elapsed: churn_tick())
        warm.close()
        warm_s = time.monotonic() - warm_start
        wf = warm.figures
        warmup_text = (
            f"{warm_s:.0f} s: every distinct query of the mix ({distinct:,}) once, a reload, "
            f"every one again (at {sweep_qps:.0f}/s), then the mix at {qps:.0f}/s for "
            f"{rest_s:.0f} s; churn throughout ({wf.sent:,} sent, {wf.lost} lost, "
            f"{wf.wrong} wrong)"
        )
        print(f"warm-up: {warmup_text}", flush=True)

        client = Client(port, Mix(args.services, args.namespaces, churn, args.lag))
        await client.open()
        seconds = args.minutes * 60
        samples = [sample(pid, 0.0)]
        print(
            f"start figures (after the warm-up): RSS {samples[0].rss_mb:.1f} MB, "
            f"fds {samples[0].fds} (before the warm-up: {first.rss_mb:.1f} MB, {first.fds})",
            flush=True,
        )
        reloads.update(sent=0, done=0, failed=0)
        pending_reload.clear()
        next_reload = [60.0]
        next_sample = [10.0]
        last_report = [0.0]

        def tick(elapsed: float) -> None:
            churn_tick()
            if elapsed >= next_reload[0]:
                next_reload[0] += 60.0
                reload_now(elapsed)
            if elapsed >= next_sample[0]:
                next_sample[0] += 10.0
                samples.append(sample(pid, elapsed))
            if elapsed - last_report[0] >= 60:
                last_report[0] = elapsed
                f = client.figures
                print(
                    f"  {elapsed / 60:4.1f} min: sent {f.sent}, answered {f.answered}, "
                    f"lost {f.lost}, wrong {f.wrong}, stale {f.stale}, churned {churn.objects}, "
                    f"reloads {reloads['done']}/{reloads['sent']}, "
                    f"RSS {samples[-1].rss_mb:.1f} MB, "
                    f"fds {samples[-1].fds}",
                    flush=True,
                )

        kernel_before = udp_errors()
        drops_before = socket_drops(pid), socket_drops(os.getpid())
        churned_before = churn.objects
        load_before = machine_load()
        start = time.monotonic()
        print(f"soak starts; first loss, if any, is reported relative to {start:.1f}", flush=True)
        await open_loop(client, qps, seconds, tick)
        took = time.monotonic() - start
        churning.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await churning
        for fut in pending_reload:
            await asyncio.wait_for(fut, 70)
        end = sample(pid, took)
        kernel = {k: v - kernel_before.get(k, 0) for k, v in udp_errors().items()}
        drops = Drops(
            server=socket_drops(pid) - drops_before[0],
            client=socket_drops(os.getpid()) - drops_before[1],
            host=kernel.get("RcvbufErrors", 0),
        )
        dropped = server_metric(side, "clusterdns_dns_dropped_requests_total")
        client.close()
        extra = [
            (f"machine ({os.cpu_count()} CPUs): load average 1/5/15 min, start -> end",
             f"{load_before} -> {machine_load()}"),
            ("UDP receive buffer: server socket / each client socket",
             f"{server_rcvbuf(port)} / {client.rcvbuf:,} bytes"),
            ("UDP receive-buffer drops, whole host (other work included)", f"{drops.host}"),
            ("server's own drops (clusterdns_dns_dropped_requests_total)", dropped or "none"),
        ]  # fmt: skip
        return report(
            args,
            client.figures,
            samples[0],
            end,
            samples,
            reloads,
            churn.objects - churned_before,
            qps,
            capacity_text,
            took,
            server,
            drops,
            warmup_text,
            extra,
        )
    finally:
        for child in reversed(children):
            child.stop()


@dataclass(frozen=True)
class Drops:
    """Datagrams the kernel dropped at full receive buffers during the soak."""

    server: int
    """At the server's sockets: queries the server did not read in time."""
    client: int
    """At this process's sockets: replies the client did not read in time (the harness)."""
    host: int
    """RcvbufErrors of the whole host (other processes' sockets included)."""


def machine_load() -> str:
    """The load average, 1/5/15 minutes."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def server_rcvbuf(port: int) -> str:
    """The receive buffer of the server's UDP socket on `port`, as `ss` shows it (rb)."""
    try:
        out = subprocess.run(
            ["ss", "-Hulmn", "sport", f"= :{port}"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(r"\brb(\d+)", out)
    return f"{int(found.group(1)):,}" if found else "unknown"


def report(
    args: argparse.Namespace,
    f: Figures,
    start: Sample,
    end: Sample,
    samples: list[Sample],
    reloads: dict[str, int],
    churned: int,
    qps: float,
    capacity: str,
    took: float,
    server: Child,
    drops: Drops,
    warmup: str,
    extra: list[tuple[str, str]],
) -> int:
    growth = (end.rss_mb - start.rss_mb) / start.rss_mb * 100
    fds_flat = abs(end.fds - start.fds) <= 1
    # Where the lost queries went. A reply the client's own socket dropped is the harness's
    # loss, not the server's; the rest were dropped at the server's socket or not answered.
    by_client = min(f.lost, drops.client)
    at_server_socket = min(f.lost - by_client, drops.server)
    unanswered = f.lost - by_client - at_server_socket
    server_lost = f.lost - by_client
    passed = (
        server_lost == 0
        and f.wrong == 0
        and growth < 5.0
        and fds_flat
        and server.proc.poll() is None
    )
    lat = f.latencies
    rows = [
        ("capacity", capacity),
        (
            "duration",
            f"{took / 60:.1f} min at {qps:.0f} queries/s target ({f.sent / took:.0f}/s sent)",
        ),
        ("warm-up before the start figures", warmup),
        ("queries sent", f"{f.sent}"),
        ("answered", f"{f.answered}"),
        ("by rcode", ", ".join(f"{k} {v}" for k, v in sorted(f.rcodes.items()))),
        ("lost (no reply in 2 s)", f"{f.lost}"),
        ("  dropped by the kernel at the server's socket (full receive buffer)",
         f"{at_server_socket} (socket counter {drops.server})"),
        ("  not answered by the server in 2 s (late replies seen: "
         f"{f.late})", f"{unanswered}"),
        ("  dropped by the kernel at the client's sockets (harness, not the server)",
         f"{by_client} (socket counter {drops.client})"),
        ("wrong answers", f"{f.wrong}"),
        ("stale (churned name, state < lag old)", f"{f.stale}"),
        ("truncated", f"{f.truncated}"),
        (
            "latency p50 / p99 / max",
            f"{percentile(lat, 0.5) * 1000:.2f} / "
            f"{percentile(lat, 0.99) * 1000:.2f} / "
            f"{(max(lat) if lat else 0) * 1000:.1f} ms",
        ),
        ("mix", ", ".join(f"{k} {v}" for k, v in sorted(f.by_kind.items()))),
        ("churn", f"{churned} objects ({churned / took:.1f}/s)"),
        (
            "reloads (SIGUSR1)",
            f"{reloads['done']} done, {reloads['failed']} failed, {reloads['sent']} sent",
        ),
        (
            "server RSS start / end (start: after the warm-up)",
            f"{start.rss_mb:.1f} / {end.rss_mb:.1f} MB ({growth:+.2f} %), "
            f"max {max(s.rss_mb for s in samples):.1f} MB",
        ),
        (
            "server open fds start / end",
            f"{start.fds} / {end.fds} (max {max(s.fds for s in samples)})",
        ),
        *extra,
    ]  # fmt: skip
    print()
    print("| figure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    for p in f.wrongs[:10]:
        print(f"  wrong: {p}")
    for p in f.problems[:10]:
        print(f"  problem: {p}")
    if f.lost_at:
        first = min(f.lost_at)
        print(f"  first loss at {first:.1f} (monotonic)")
        buckets = Counter(int(t - first) for t in f.lost_at)
        print(
            "  lost queries by second (from the first loss): "
            + ", ".join(f"+{k}s {v}" for k, v in sorted(buckets.items())[:20])
        )
    if args.verbose:
        for line in server.lines:
            if not line.startswith("[INFO] 127.0.0.1"):
                print(f"  server: {line}")
    print(
        f"\n{'PASS' if passed else 'FAIL'}: lost at or in the server {server_lost} (0), "
        f"wrong {f.wrong} (0), RSS growth {growth:+.2f} % (< 5 %), "
        f"fds {start.fds} -> {end.fds} (flat)"
        + (f"; the client's own sockets dropped {by_client} replies" if by_client else "")
    )
    return 0 if passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    p.add_argument("--qps", type=float, help="soak rate; default: --load of measured capacity")
    p.add_argument("--load", type=float, default=0.5, help="fraction of capacity (default 0.5)")
    p.add_argument("--capacity-seconds", type=float, default=30.0, help="capacity probe length")
    p.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="warm-up seconds before the start figures: two sweeps of every distinct query "
        "around a reload, then the soak rate (default 60)",
    )
    p.add_argument("--outstanding", type=int, default=64, help="in flight while probing")
    p.add_argument("--services", type=int, default=1000, help="synthetic Services (default 1000)")
    p.add_argument("--namespaces", type=int, default=20, help="their namespaces (default 20)")
    p.add_argument("--churn", type=float, default=10.0, help="objects changed per second")
    p.add_argument("--lag", type=float, default=1.0, help="seconds a churned answer may lag")
    p.add_argument("--verbose", action="store_true", help="print the server's log at the end")
    args = p.parse_args(argv)
    try:
        return asyncio.run(asyncio.wait_for(soak(args), args.minutes * 60 + 600))
    except (SoakError, TimeoutError) as exc:
        print(f"soak could not complete: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
