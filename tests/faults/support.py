"""Shared pieces of the fault tests (and of `bench/faults.py`): load, churn, state checks, a slow
proxy.

- `Load` asks a fixed set of names over UDP (and optionally TCP) without pause while a fault runs
  and records every reply, so a test can assert "no query lost, no wrong answer" for the whole
  window, not just before and after.
- `Churn` creates, changes and deletes Services (with their EndpointSlices) in the API test
  double at a steady rate and remembers what each name should answer now.
- `diff_store` compares the server's watch cache with the objects the API holds, including the
  IP indexes (a duplicated or a lost object shows as a difference).
- `api_down` / `api_up` kill and restart the API test double so that, from the moment
  `api_down` returns, nothing the API holds can reach the server.
- `SlowProxy` sits between the server and the API and delays every chunk the API sends, or holds
  every chunk until released.

Pacing waits (`asyncio.sleep` between two queries or two changes) set a rate; they are never what
a test synchronises on: tests wait on the condition itself (`eventually`), bounded. A change a
test relies on (made while a fault lasts) is made by the test itself (`Churn.step`), never left to
the background churn's timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import psutil

from clusterdns.chain.build import Config
from clusterdns.chain.handler import Handler
from clusterdns.k8s.objects import Kind, Object, from_api
from clusterdns.k8s.store import Store
from clusterdns.plugins.kubernetes.handler import Kubernetes
from tests.k8s.fakeapi import FakeApi

JSON = dict[str, Any]
QUERY_TIMEOUT_S: Final = 2.0
"""How long one query of `Load` waits before it counts as lost (loopback answers take ~1 ms)."""
CHURN_NAMESPACE: Final = "churn"
CHURN_NET: Final = ipaddress.ip_network("10.99.0.0/16")
RESOURCES: Final = {
    Kind.SERVICE: "services",
    Kind.ENDPOINTSLICE: "endpointslices",
    Kind.NAMESPACE: "namespaces",
    Kind.POD: "pods",
}


# -- the chain of a running configuration ---------------------------------------------------------
def handlers(config: Config) -> list[Handler]:
    """The first block's plugins, outermost first."""
    out: list[Handler] = []
    h: Handler | None = config.blocks[0].head
    while h is not None:
        out.append(h)
        h = getattr(h, "next", None)
    return out


def kubernetes_store(config: Config) -> Store:
    """The watch cache of the first block's kubernetes plugin."""
    (k8s,) = [h for h in handlers(config) if isinstance(h, Kubernetes)]
    return k8s.store


# -- load --------------------------------------------------------------------------------------
@dataclass
class Tally:
    """What one `Load` saw."""

    sent: int = 0
    answered: int = 0
    lost: int = 0
    wrong: int = 0
    rcodes: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    records: list[tuple[float, float | None]] = field(default_factory=list)
    """(sent at, answered at or None), monotonic seconds, one per query."""
    """The first few wrong or lost queries, for the failure message."""

    def note(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text)

    def summary(self) -> str:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.rcodes.items()))
        return (
            f"sent {self.sent}, answered {self.answered}, lost {self.lost}, wrong {self.wrong} "
            f"({codes}); first problems: {self.examples}"
        )


Expect = Callable[[str, dns.message.Message], str | None]
"""Check one reply: None when right, else what is wrong."""


def addresses(msg: dns.message.Message) -> set[str]:
    """The A and AAAA addresses of a reply's answer section."""
    return {
        rd.to_text()
        for rrset in msg.answer
        for rd in rrset
        if rd.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
    }


def expect_addresses(table: Mapping[str, set[str]]) -> Expect:
    """Each name must answer NOERROR with exactly its addresses."""

    def check(name: str, msg: dns.message.Message) -> str | None:
        want = table[name]
        if msg.rcode() != dns.rcode.NOERROR or addresses(msg) != want:
            code = dns.rcode.to_text(msg.rcode())
            return f"{name}: {code} {sorted(addresses(msg))}, want {sorted(want)}"
        return None

    return check


class Load:
    """Ask `names` in turn, `concurrency` queries at a time, until `stop()`; tally the replies."""

    def __init__(
        self,
        port: int,
        names: list[str],
        expect: Expect,
        *,
        concurrency: int = 4,
        proto: str = "udp",
        host: str = "127.0.0.1",
        timeout_s: float = QUERY_TIMEOUT_S,
    ) -> None:
        self.timeout_s = timeout_s
        self.port = port
        self.names = names
        self.expect = expect
        self.concurrency = concurrency
        self.proto = proto
        self.host = host
        self.tally = Tally()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _one(self, name: str) -> None:
        q = dns.message.make_query(name, "A")
        self.tally.sent += 1
        record = len(self.tally.records)
        self.tally.records.append((time.monotonic(), None))
        try:
            if self.proto == "tcp":
                reply = await dns.asyncquery.tcp(
                    q, self.host, port=self.port, timeout=self.timeout_s
                )
            else:
                reply = await dns.asyncquery.udp(
                    q, self.host, port=self.port, timeout=self.timeout_s
                )
        except (dns.exception.Timeout, OSError, EOFError) as exc:
            self.tally.lost += 1
            self.tally.note(f"{name}: lost ({type(exc).__name__})")
            return
        self.tally.answered += 1
        self.tally.records[record] = (self.tally.records[record][0], time.monotonic())
        self.tally.rcodes[dns.rcode.to_text(reply.rcode())] += 1
        problem = self.expect(name, reply)
        if problem is not None:
            self.tally.wrong += 1
            self.tally.note(problem)

    async def _worker(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            await self._one(self.names[i % len(self.names)])
            i += self.concurrency

    def start(self) -> Load:
        """Begin asking (inside a running loop); returns self."""
        self._tasks = [
            asyncio.get_running_loop().create_task(self._worker(i)) for i in range(self.concurrency)
        ]
        return self

    async def stop(self) -> Tally:
        """Let the queries in flight finish, then return the tally."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.tally

    async def until(self, sent: int, timeout_s: float = 60.0) -> None:
        """Wait until at least `sent` queries went out (pacing a test, bounded)."""
        deadline = time.monotonic() + timeout_s
        while self.tally.sent < sent:
            assert time.monotonic() < deadline, f"load stalled: {self.tally.summary()}"
            await asyncio.sleep(0.01)


# -- churn -------------------------------------------------------------------------------------
def namespace(name: str) -> JSON:
    """A Namespace object."""
    return {"kind": "Namespace", "metadata": {"name": name}}


def service(ns: str, name: str, ip: str) -> JSON:
    """A ClusterIP Service with one port."""
    return {
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def endpoint_slice(ns: str, service_name: str, *ips: str) -> JSON:
    """The EndpointSlice of a Service, every address ready."""
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns,
            "name": f"{service_name}-abcde",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


@dataclass
class Churn:
    """Create, re-address and delete Services in `fake` at `rate_per_s` objects per second.

    Each step changes one Service and its EndpointSlice (two objects); `live` maps each existing
    churn Service's name to its cluster IP, `gone` holds deleted names. Deterministic for a seed.
    """

    fake: FakeApi
    rate_per_s: float = 10.0
    seed: int = 8
    live: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    steps: int = 0
    objects: int = 0
    _next: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.fake.create(namespace(CHURN_NAMESPACE))

    def fqdn(self, name: str) -> str:
        """The DNS name of a churn Service."""
        return f"{name}.{CHURN_NAMESPACE}.svc.cluster.local."

    def _ip(self) -> str:
        self._next += 1
        return str(CHURN_NET.network_address + self._next)

    def step(self) -> None:
        """One change: add a Service (half the time), move one, or delete one."""
        roll = self.random.random()
        if not self.live or roll < 0.5:
            name = f"c{self.steps:05d}"
            ip = self._ip()
            self.fake.create(service(CHURN_NAMESPACE, name, ip))
            self.fake.create(endpoint_slice(CHURN_NAMESPACE, name, self._pod_ip()))
            self.live[name] = ip
            self.gone.discard(name)
        elif roll < 0.8:
            name = self.random.choice(sorted(self.live))
            ip = self._ip()
            self.fake.update(service(CHURN_NAMESPACE, name, ip))
            self.fake.update(endpoint_slice(CHURN_NAMESPACE, name, self._pod_ip()))
            self.live[name] = ip
        else:
            name = self.random.choice(sorted(self.live))
            self.fake.delete("EndpointSlice", CHURN_NAMESPACE, f"{name}-abcde")
            self.fake.delete("Service", CHURN_NAMESPACE, name)
            del self.live[name]
            self.gone.add(name)
        self.steps += 1
        self.objects += 2

    def _pod_ip(self) -> str:
        return f"10.250.{self.steps // 250 % 250}.{self.steps % 250 + 1}"

    async def run(self) -> None:
        """Change at the configured rate until `stop()`."""
        interval = 2.0 / self.rate_per_s  # two objects per step
        start = time.monotonic()
        while not self._stop.is_set():
            self.step()
            delay = start + self.steps * interval - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    def stop(self) -> None:
        """End `run`."""
        self._stop.set()


# -- the watch cache against the API -----------------------------------------------------------
def api_objects(fake: FakeApi, kind: Kind) -> dict[tuple[str, str], Object]:
    """The objects of `kind` the API holds now, converted as the watch converts them."""
    with fake.cond:
        raw = list(fake.state.objects[RESOURCES[kind]].values())
    out: dict[tuple[str, str], Object] = {}
    for d in raw:
        obj = from_api(kind, d)
        if obj is not None:
            out[obj.key] = obj
    return out


def store_objects(store: Store, kind: Kind) -> dict[tuple[str, str], Object]:
    """The objects of `kind` in the watch cache."""
    if kind is Kind.SERVICE:
        return dict(store.services)
    if kind is Kind.ENDPOINTSLICE:
        return dict(store.slices)
    if kind is Kind.POD:
        return dict(store.pods)
    return {("", name): ns for name, ns in store.namespaces.items()}


def diff_store(store: Store, fake: FakeApi, kinds: tuple[Kind, ...]) -> list[str]:
    """Every difference between the watch cache and the API's objects (empty: the same).

    Besides the tables, the IP index is checked from both sides: every Service address the API
    knows finds exactly the Services that have it, and no Service the API does not have is
    found under an address (a duplicated or stale index entry).
    """
    problems: list[str] = []
    for kind in kinds:
        want = api_objects(fake, kind)
        got = store_objects(store, kind)
        for key in sorted(set(want) - set(got)):
            problems.append(f"{kind.name} {key}: in the API, missing from the store")
        for key in sorted(set(got) - set(want)):
            problems.append(f"{kind.name} {key}: in the store, deleted from the API")
        for key in sorted(set(want) & set(got)):
            if want[key] != got[key]:
                problems.append(f"{kind.name} {key}: store {got[key]} != API {want[key]}")
    if Kind.SERVICE in kinds:
        services = api_objects(fake, Kind.SERVICE)
        by_ip: dict[str, set[tuple[str, str]]] = {}
        for key, svc in services.items():
            for ip in getattr(svc, "cluster_ips", ()):
                if ip in ("", "None"):
                    continue  # headless
                by_ip.setdefault(ip, set()).add(key)
        for ip, keys in sorted(by_ip.items()):
            found = [s.key for s in store.services_by_ip(ip)]
            if sorted(found) != sorted(keys):
                problems.append(f"services_by_ip({ip}) = {found}, want {sorted(keys)}")
    return problems


def churn_diff(store: Store, churn: Churn) -> list[str]:
    """Differences between the churn's own record and the store's churn Services."""
    problems: list[str] = []
    for name, ip in churn.live.items():
        svc = store.services.get((CHURN_NAMESPACE, name))
        if svc is None or ip not in svc.cluster_ips:
            problems.append(f"{name}: store has {svc}, want {ip}")
    for name in churn.gone:
        if (CHURN_NAMESPACE, name) in store.services:
            problems.append(f"{name}: deleted, still in the store")
        for address in (CHURN_NET.network_address + i for i in range(1, churn._next + 1)):
            for svc in store.services_by_ip(str(address)):
                if svc.name == name:
                    problems.append(f"{name}: deleted, still indexed under {address}")
    return problems


# -- the API killed and restarted -----------------------------------------------------------------
def api_down(fake: FakeApi) -> None:
    """Kill the API test double: connections refused, every open one cut, nothing served.

    `FakeApi.down` cuts the open connections first and closes its listener afterwards (its
    serving thread notices the shutdown within 50 ms); a watch that reconnects at once, as a
    reflector does after a watch that delivered events, can be accepted in between and would
    then stream every later change although the API is "down". Every resource is forbidden
    before that, so such a request gets a 403 and no object: once this returns, no change made
    in `fake` can reach the server until `api_up`.
    """
    for resource in RESOURCES.values():
        fake.forbid(resource)
    fake.down()


def api_up(fake: FakeApi) -> None:
    """Restart the API killed by `api_down` on the same port, serving everything again."""
    for resource in RESOURCES.values():
        fake.allow(resource)
    fake.up()


# -- a slow API ---------------------------------------------------------------------------------
class SlowProxy:
    """A TCP proxy on 127.0.0.1 that delays each chunk from the upstream by `delay_s` (mutable).

    `hold()` stops every chunk from the upstream until `release()` (an API that accepts requests
    and answers nothing): unlike a delay, it ends when the test says, not after a time.
    """

    def __init__(self, upstream_port: int, delay_s: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.port = 0
        self.connections = 0
        self.held = 0
        """Chunks from the upstream that had to wait for `release()`."""
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> SlowProxy:
        """Listen; returns self."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def hold(self) -> None:
        """Hold every chunk from the upstream (requests still go through) until `release()`."""
        self._flowing.clear()

    def release(self) -> None:
        """Let held and later chunks through."""
        self._flowing.set()

    async def stop(self) -> None:
        """Stop listening and cut every connection (their pipes end on their own)."""
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, delay=False),
                self._pipe(up_reader, writer, delay=True),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            up_writer.close()
            self._writers.discard(writer)
            self._writers.discard(up_writer)
            self._tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay: bool
    ) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            if delay and not self._flowing.is_set():
                self.held += 1
                await self._flowing.wait()  # the fault itself: an API that does not answer
            if delay and self.delay_s > 0:
                await asyncio.sleep(self.delay_s)  # the fault itself: a slow API server
            writer.write(chunk)
            await writer.drain()


@contextlib.asynccontextmanager
async def slow_proxy(upstream_port: int, delay_s: float = 0.0) -> AsyncIterator[SlowProxy]:
    """A started `SlowProxy`, stopped on exit."""
    proxy = await SlowProxy(upstream_port, delay_s).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


# -- the real command line ---------------------------------------------------------------------
CLI: Final = (sys.executable, "-m", "clusterdns")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (a reader sees the old or the new file, never half).

    The `reload` plugin reads the Corefile on its own schedule; `Path.write_text` truncates first,
    so a check landing in between would read an empty or partial Corefile.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Cli:
    """A clusterdns process started from a Corefile file; `lines` collects its stdout lines."""

    proc: asyncio.subprocess.Process
    port: int
    conf: Path
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_line(self, pattern: str, *, after: int = 0, timeout_s: float = 60.0) -> str:
        """The first stdout line from index `after` on that matches `pattern` (a regex)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.lines[after:]:
                if rx.search(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r}; got {self.lines[after:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()


class ServerExited(AssertionError):
    """The server process ended before it was up."""


def bound_dns_port(pid: int) -> int | None:
    """The UDP port a process has bound on 127.0.0.1 (None until it has, or once it exited)."""
    try:
        conns = psutil.Process(pid).net_connections(kind="udp")
    except psutil.NoSuchProcess:
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.ip == "127.0.0.1":
            return int(conn.laddr.port)
    return None


@contextlib.asynccontextmanager
async def cli_server(
    corefile: str,
    folder: Path,
    *,
    stdout: int | IO[bytes] = asyncio.subprocess.PIPE,
    args: tuple[str, ...] = (),
    timeout_s: float = 60.0,
    stop_timeout_s: float = 15.0,
) -> AsyncIterator[Cli]:
    """Run the CLI on `corefile` (listening on 127.0.0.1, port 0 allowed) until the block ends.

    It is up when its pid file exists (written once every listener is bound); the DNS port is
    read from the process's sockets. On exit the process is stopped: SIGTERM, then SIGKILL.
    """
    conf = folder / "Corefile"
    conf.write_text(corefile)
    pidfile = folder / "clusterdns.pid"
    pidfile.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "-conf",
        str(conf),
        "-pidfile",
        str(pidfile),
        *args,
        stdout=stdout,
        stderr=asyncio.subprocess.STDOUT if stdout == asyncio.subprocess.PIPE else stdout,
    )
    cli = Cli(proc, 0, conf)
    if proc.stdout is not None:
        cli._reader = asyncio.get_running_loop().create_task(cli._read(proc.stdout))
    try:
        deadline = time.monotonic() + timeout_s
        while not pidfile.exists() or bound_dns_port(proc.pid) is None:
            if proc.returncode is not None:
                raise ServerExited(f"the server exited ({proc.returncode}): {cli.lines}")
            assert time.monotonic() < deadline, f"the server did not come up: {cli.lines}"
            await asyncio.sleep(0.02)  # polling the pid file: the process has no other signal
        port = bound_dns_port(proc.pid)
        assert port is not None
        cli.port = port
        yield cli
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), stop_timeout_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if cli._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cli._reader, 5)
