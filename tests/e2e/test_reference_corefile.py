"""Every example of spec §6.14, and the cache examples of §8.3, through the real server running the
reference (kubeadm) Corefile of spec §0.3, in both of its cache forms.

In process: the reference Corefile text with only its addresses changed (`.:0`, side listeners on
`127.0.0.1:0`, `forward` to a loopback stub that answers like the spec's reference upstream) and
the cluster read from `tests/fixtures/k8s/reference.yaml`; every example is asked over UDP and
TCP of a server per cache form and `kubernetes` setting. The cache's clock is injected: before
each example it jumps an hour ahead, so every example gets the first (uncached) reply, and the
§8.3 tests move it second by second. The kubernetes plugin's own-address hook says the server is
the kube-dns pod 10.244.0.2 (or, for the one example that says so, a server outside the cluster
bound to 192.0.2.7).

In network namespaces: the reference Corefile as written (plus `from_yaml`), run by the CLI in a
"pod" namespace whose address is 10.244.0.2 and whose `/etc/resolv.conf` names a stub in a
"node" namespace at the other end of a veth pair; a handful of examples are asked with `dig`, and
/health, /ready, /metrics and `loop` are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, TypeVar

import pytest
import pytest_asyncio
from dnslib import RR, DNSRecord

from clusterdns.chain.build import Config
from clusterdns.chain.handler import Handler
from clusterdns.plugins.cache import Cache
from clusterdns.plugins.kubernetes.handler import Kubernetes
from clusterdns.plugins.loop.handler import Loop
from clusterdns.server.lifecycle import Server
from tests.dnstest import Case, build_config, http_get, tcp_exchange, udp_exchange
from tests.e2e.reference_cases import (
    BEFORE_SYNC,
    CACHE_TTL,
    DIG_EXAMPLES,
    EXAMPLES,
    LAMEDUCK_S,
    REFERENCE_COREFILE,
    STUB_RECORDS,
    CacheForm,
    Example,
    example,
    reference_corefile,
    stub_zone,
    with_serial,
    with_ttl,
)
from tests.netns import NetNS, network_namespace, read_line, unavailable
from tests.plugins.cache.helpers import FakeClock
from tests.plugins.kubernetes.cluster import AA, FORWARDED, REFERENCE_YAML, soa
from tests.upstream import DEFAULT_RECORDS, ScriptedUpstream, scripted_upstream

ROOT: Final = Path(__file__).resolve().parents[2]
WAIT_S: Final = 15.0
"""Bound for anything a test waits on (a sync, a file change to show, the loop probe)."""
EXPIRE_ALL_S: Final = 3600.0
"""Moving the cache clock this far expires every entry (`cache 30` keeps nothing longer)."""
LOOP_PROBE: Final = re.compile(r"^\d+\.\d+\.$")
"""The loop plugin's probe name in the root zone: `<random>.<random>.`."""

TRANSPORTS: Final = ("udp", "tcp")

KNOWN_BUGS: Final[dict[tuple[str, str | None, str | None], str]] = {}
"""(example id, cache form id or None for both, transport or None for both) -> the bug, for
examples that fail because of a reported bug (strict xfail: the lead removes the entry)."""


# -- the server under test -----------------------------------------------------------------------


def chain(head: Handler | None) -> list[Handler]:
    """The handlers of a chain, head first."""
    out: list[Handler] = []
    while head is not None:
        out.append(head)
        head = getattr(head, "next", None)
    return out


H = TypeVar("H")


def find(config: Config, kind: type[H]) -> H:
    """The only handler of type `kind` in the first block's chain."""
    (found,) = [h for h in chain(config.blocks[0].head) if isinstance(h, kind)]
    return found


def inject_clock(config: Config, clock: Callable[[], float]) -> Cache:
    """Replace the block's cache by one with the same configuration, next plugin and metric series
    whose clock is `clock` (the cache plugin's constructor takes it; setup passes the real one)."""
    block = config.blocks[0]
    handlers = chain(block.head)
    for index, handler in enumerate(handlers):
        if isinstance(handler, Cache):
            new = Cache(handler.config, handler.next, metrics=handler.metrics, clock=clock)
            if index == 0:
                block.head = block.settings.head = new
            else:
                setattr(handlers[index - 1], "next", new)  # noqa: B010 (Handler has no `next`)
            return new
    raise AssertionError("the reference Corefile has a cache")


@dataclass
class Running:
    """A started reference server and the objects the tests steer or read."""

    server: Server
    kubernetes: Kubernetes
    cache: Cache
    loop: Loop
    clock: FakeClock

    @property
    def port(self) -> int:
        return self.server.port()

    @property
    def serial(self) -> int:
        """The SOA serial the running store hands out."""
        return self.kubernetes.store.serial

    def own_addresses(self, addresses: tuple[str, ...]) -> None:
        """Make the kubernetes plugin see `addresses` as the server's own (spec §6.14 apex NS)."""
        self.kubernetes.local_addresses = lambda: list(addresses)

    def http_port(self) -> int:
        """The port of the side listener health, ready and prometheus share (`127.0.0.1:0`)."""
        (listener,) = self.server.config.process.http.listeners.values()
        return listener.port


@contextlib.asynccontextmanager
async def reference_server(corefile: str) -> AsyncIterator[Running]:
    """Set up and start the real server from `corefile` with a fake cache clock."""
    config = build_config(corefile)
    clock = FakeClock()
    cache = inject_clock(config, clock)

    async def no_lameduck(seconds: float) -> None:
        """Stop without the `lameduck 5s` wait (shutdown is not what these tests are about)."""

    server = Server(config, quiet=True, sleep=no_lameduck)
    await server.start()
    running = Running(server, find(config, Kubernetes), cache, find(config, Loop), clock)
    try:
        yield running
    finally:
        await server.stop(graceful=False)
        await cache.close()


async def ask(port: int, qname: str, qtype: str = "A", transport: str = "udp") -> DNSRecord:
    """One query with RD set, as `dig` sends it; the reply, its ID and question checked."""
    query = DNSRecord.question(qname, qtype)
    wire = bytes(query.pack())
    if transport == "udp":
        data = await udp_exchange(port, wire)
    else:
        (data,) = await tcp_exchange(port, wire)
    reply = DNSRecord.parse(data)
    assert reply.header.id == query.header.id
    assert [str(q.qname) for q in reply.questions] == [qname]
    return reply


def forwarded_since(stub: ScriptedUpstream, since: int) -> list[str]:
    """Queries the stub received from index `since` on, as "qname TYPE", without probes (forward
    health checks and the loop plugin's start-up probe)."""
    return [
        f"{q.qname} {q.qtype}"
        for q in stub.received[since:]
        if not q.probe and not (q.qtype == "HINFO" and LOOP_PROBE.match(q.qname))
    ]


class Rig:
    """The stub upstream and one reference server per (cache form, kubernetes setting), started
    on first use and shared by the module's tests."""

    def __init__(self, stub: ScriptedUpstream, tmp: Path, stack: contextlib.AsyncExitStack) -> None:
        self.stub = stub
        self.tmp = tmp
        self.stack = stack
        self.servers: dict[tuple[CacheForm, tuple[str, ...], bool], Running] = {}

    def corefile(
        self, form: CacheForm, options: tuple[str, ...] = (), *, synced: bool = True
    ) -> str:
        yaml: Path = REFERENCE_YAML
        if not synced:
            # A cluster dump that does not parse: the list fails and is retried, so the store
            # stays unsynced; start-up waits `startup_timeout` for it (1 s instead of 5 s).
            yaml = self.tmp / "unparsable.yaml"
            yaml.write_text("kind: [Service\n")
            options = (*options, "startup_timeout 1s")
        return reference_corefile(form, yaml=yaml, options=options, stub=self.stub.addr)

    async def server(
        self, form: CacheForm, options: tuple[str, ...] = (), *, synced: bool = True
    ) -> Running:
        key = (form, options, synced)
        if key not in self.servers:
            text = self.corefile(form, options, synced=synced)
            self.servers[key] = await self.stack.enter_async_context(reference_server(text))
        return self.servers[key]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    async with contextlib.AsyncExitStack() as stack:
        stub = await stack.enter_async_context(scripted_upstream(stub_zone()))
        yield Rig(stub, tmp_path_factory.mktemp("reference"), stack)


# -- the Corefile --------------------------------------------------------------------------------


def test_the_in_process_corefile_changes_only_addresses_and_the_cluster_source() -> None:
    for form in CacheForm:
        text = reference_corefile(form, stub="127.0.0.1:5300")
        want = (
            REFERENCE_COREFILE.replace(".:53 {", ".:0 {")
            .replace("    health {", "    health 127.0.0.1:0 {")
            .replace("    ready\n", "    ready 127.0.0.1:0\n")
            .replace("prometheus :9153", "prometheus 127.0.0.1:0")
            .replace("forward . /etc/resolv.conf", "forward . 127.0.0.1:5300")
            .replace("ttl 30\n", f"ttl 30\n       from_yaml {REFERENCE_YAML}\n")
            .replace("    cache 30\n", form.text)
        )
        assert text == want
        config = build_config(text)
        assert config.blocks[0].plugins == (
            "prometheus",
            "errors",
            "loadbalance",
            "cache",
            "kubernetes",
            "loop",
            "forward",
        )
        assert config.process.lameduck_s == LAMEDUCK_S


def test_every_worked_example_is_in_the_table() -> None:
    # §6.14 has 90 example queries: the handler table's 88, AXFR and the not-synced SERVFAIL.
    assert len(EXAMPLES) == 90
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)
    for e in EXAMPLES:
        ttls = {
            rr.ttl
            for line in (*e.case.answer, *e.case.ns, *e.case.extra)
            for rr in RR.fromZone(line)
        }
        assert ttls <= {CACHE_TTL} or (e.case.rcode == "SERVFAIL" and ttls == {5}), e.id


# -- every §6.14 example, over UDP and TCP, in both cache forms ------------------------------------


def _marks(e: Example, form: CacheForm, transport: str) -> list[pytest.MarkDecorator]:
    for (label, f, t), reason in KNOWN_BUGS.items():
        if label == e.id and f in (None, form.id) and t in (None, transport):
            return [pytest.mark.xfail(strict=True, reason=reason)]
    return []


PARAMS: Final = [
    pytest.param(
        e, form, transport, id=f"{transport}-{form.id}-{e.id}", marks=_marks(e, form, transport)
    )
    for form in CacheForm
    for transport in TRANSPORTS
    for e in EXAMPLES
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("e", "form", "transport"), PARAMS)
async def test_worked_example(rig: Rig, e: Example, form: CacheForm, transport: str) -> None:
    running = await rig.server(form, e.options, synced=e.synced)
    running.clock.advance(EXPIRE_ALL_S)  # nothing an earlier example left in the cache is fresh
    running.own_addresses(e.local)
    since = len(rig.stub.received)
    reply = await ask(running.port, e.case.qname, e.case.qtype, transport)
    with_serial(e.case, running.serial).check(reply)
    if e.case.rcode == "REFUSED":
        assert not reply.rr and not reply.auth and not reply.ar
    assert forwarded_since(rig.stub, since) == list(e.upstream)


# -- the running configuration: side listeners, loop --------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("form", list(CacheForm), ids=lambda f: f.id)
async def test_side_listeners_and_loop(rig: Rig, form: CacheForm) -> None:
    running = await rig.server(form)
    async with asyncio.timeout(WAIT_S):
        await running.loop.finished.wait()
    assert not running.loop.detected and not running.loop.enabled
    probes = [q for q in rig.stub.received if q.qtype == "HINFO" and q.qname == running.loop.qname]
    assert probes, "the loop probe went out through forward (and did not come back)"
    port = running.http_port()
    health = await http_get(port, "/health", timeout_s=WAIT_S)
    assert (health.status, health.text) == (200, "OK")
    ready = await http_get(port, "/ready", timeout_s=WAIT_S)
    assert (ready.status, ready.text) == (200, "OK")
    metrics = await http_get(port, "/metrics", timeout_s=WAIT_S)
    assert metrics.status == 200
    assert "clusterdns_loop_detected{" not in metrics.text


# -- spec §8.3: repeated queries, with the cache's clock -----------------------------------------


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("form", list(CacheForm), ids=lambda f: f.id)
async def test_forwarded_answer_counts_down(rig: Rig, form: CacheForm) -> None:
    # t=0: 30 (upstream said 3600); t=7: 23 from the cache (qr aa rd ra); t=31: forwarded again.
    async with reference_server(rig.corefile(form)) as running:
        since = len(rig.stub.received)
        answer = "example.com. {ttl} IN A 93.184.215.14"
        first = Case(qname="example.com.", answer=[answer.format(ttl=30)], flags=FORWARDED)
        first.check(await ask(running.port, "example.com."))
        running.clock.advance(7)
        hit = Case(qname="example.com.", answer=[answer.format(ttl=23)], flags="qr aa rd ra")
        hit.check(await ask(running.port, "example.com.", transport="tcp"))
        assert forwarded_since(rig.stub, since) == ["example.com. A"]
        running.clock.advance(24)
        first.check(await ask(running.port, "example.com."))
        assert forwarded_since(rig.stub, since) == ["example.com. A"] * 2


REPEATED: Final = (
    ("api.prod.svc.cluster.local. A", 20, 30),
    ("web.prod.svc.cluster.local. A", 20, 30),
    ("dns-version.cluster.local. TXT", 20, 30),
    ("kubernetes.default.svc.cluster.local. AAAA", 20, 30),
    ("nosuch.prod.svc.cluster.local. A", 20, 30),
    ("cluster.local. SOA", 20, 30),
    # The new form does not store the ExternalName reply, but the plugin chases db.example.com
    # through the whole chain, whose cache holds the upstream A (20 s left); the reply then
    # leaves with its smallest TTL, 20, on both records (spec §8.2).
    ("db.prod.svc.cluster.local. A", 20, 20),
    # Reverse zones are not under cluster.local: cached in both forms.
    ("1.0.96.10.in-addr.arpa. PTR", 20, 20),
)
"""(example, TTL 10 s later in the old form, in the new form): under cluster.local the old form
answers from the cache (TTL 20, AA) and the new form from the plugin again (TTL 30)."""


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("form", list(CacheForm), ids=lambda f: f.id)
@pytest.mark.parametrize(("label", "old_ttl", "new_ttl"), REPEATED, ids=[r[0] for r in REPEATED])
async def test_example_asked_again(
    rig: Rig, form: CacheForm, label: str, old_ttl: int, new_ttl: int
) -> None:
    # §8.3: t=0 api... 30 IN A; t=10 api... 20 (cache) [with `disable success cluster.local`: 30].
    e = example(label)
    running = await rig.server(form)
    running.clock.advance(EXPIRE_ALL_S)
    running.own_addresses(e.local)
    first = with_serial(e.case, running.serial)
    first.check(await ask(running.port, e.case.qname, e.case.qtype))
    running.clock.advance(10)
    since = len(rig.stub.received)
    reply = await ask(running.port, e.case.qname, e.case.qtype, "tcp")
    ttl = old_ttl if form is CacheForm.OLD else new_ttl
    assert first.flags is not None
    again = replace(
        first,
        answer=with_ttl(first.answer, ttl),
        ns=with_ttl(first.ns, ttl),
        extra=with_ttl(first.extra, ttl),
        flags=" ".join(sorted({*first.flags.split(), "aa"})),  # a cache hit always sets AA
    )
    again.check(reply)
    assert forwarded_since(rig.stub, since) == (list(e.upstream) if ttl == CACHE_TTL else [])


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("form", list(CacheForm), ids=lambda f: f.id)
async def test_servfail_before_sync_asked_again(rig: Rig, form: CacheForm) -> None:
    # SERVFAIL is kept for the `servfail` duration (5 s) in the denial cache (spec §8.2), which
    # the new form disables for cluster.local: 2 s later the old form answers from the cache.
    running = await rig.server(form, synced=False)
    running.clock.advance(EXPIRE_ALL_S)
    first = with_serial(BEFORE_SYNC.case, running.serial)
    first.check(await ask(running.port, first.qname, first.qtype))
    running.clock.advance(2)
    reply = await ask(running.port, first.qname, first.qtype, "tcp")
    left = 3 if form is CacheForm.OLD else 5
    replace(first, ns=with_ttl(first.ns, left)).check(reply)


NEW_SERVICE: Final = """\
---
apiVersion: v1
kind: Service
metadata:
  name: new
  namespace: prod
spec:
  type: ClusterIP
  clusterIP: 10.96.8.8
  clusterIPs: [10.96.8.8]
  ports:
    - name: http
      port: 80
      protocol: TCP
"""


async def until(condition: Callable[[], bool], changed: asyncio.Event) -> None:
    """Wait (at most WAIT_S) for `condition`, re-checking whenever `changed` is set."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await changed.wait()
            changed.clear()


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("form", list(CacheForm), ids=lambda f: f.id)
async def test_service_created_after_a_cached_nxdomain(
    rig: Rig, form: CacheForm, tmp_path: Path
) -> None:
    # §8.3: t=0 NXDOMAIN (SOA 30); t=5 the service is created; t=6 NXDOMAIN from the cache
    # until t=30 in the old form, the A record at once with `disable denial cluster.local`.
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(REFERENCE_YAML.read_text())
    text = reference_corefile(form, yaml=cluster, stub=rig.stub.addr)
    qname = "new.prod.svc.cluster.local."
    async with reference_server(text) as running:
        running.own_addresses(example("api.prod.svc.cluster.local. A").local)
        serial = running.serial
        nxdomain = Case(qname=qname, rcode="NXDOMAIN", ns=[soa(serial=serial)], flags=AA)
        nxdomain.check(await ask(running.port, qname))

        running.clock.advance(5)
        store = running.kubernetes.store
        changed = asyncio.Event()
        store.listeners.append(changed.set)
        with cluster.open("a") as f:
            f.write(NEW_SERVICE)
        await until(lambda: ("prod", "new") in store.services, changed)

        running.clock.advance(1)
        created = Case(qname=qname, answer=[f"{qname} 30 IN A 10.96.8.8"], flags=AA)
        reply = await ask(running.port, qname, transport="tcp")
        if form is CacheForm.OLD:
            cached = Case(qname=qname, rcode="NXDOMAIN", ns=[soa(serial=serial, rttl=24)], flags=AA)
            cached.check(reply)  # t=6: the NXDOMAIN stored at t=0
            running.clock.advance(23)
            cached = replace(cached, ns=[soa(serial=serial, rttl=1)])
            cached.check(await ask(running.port, qname))  # t=29
            running.clock.advance(1)
            # t=30: 0 s left is not fresh (spec §8.2), so the plugin answers again.
            created.check(await ask(running.port, qname))
        else:
            created.check(reply)


# -- the namespace tier: the CLI with the reference Corefile as written --------------------------

POD_IP: Final = "10.244.0.2"
"""The kube-dns pod the server runs as (spec §0.4): its namespace's end of the veth pair."""
NODE_IP: Final = "10.244.0.1"
"""The other end, in the stub's namespace: the resolver the pod's resolv.conf names."""
PREFIX_LEN: Final = 24
SECTIONS: Final = {"ANSWER": "answer", "AUTHORITY": "ns", "ADDITIONAL": "extra"}
CLUSTER_SOA: Final = re.compile(r"^cluster\.local\.\s+\d+\s+IN\s+SOA\s+\S+\s+\S+\s+(\d+)\s")


@dataclass
class DigReply:
    """What `dig` printed: status, flags and the records of each section (dnslib's text)."""

    status: str
    flags: set[str]
    sections: dict[str, list[str]]

    def serials(self) -> set[int]:
        """The serials of the cluster.local SOA records in the reply."""
        found = (CLUSTER_SOA.match(r) for rrs in self.sections.values() for r in rrs)
        return {int(m.group(1)) for m in found if m}


def parse_dig(out: str) -> DigReply:
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    assert status is not None and flags is not None, out
    sections: dict[str, list[str]] = {"answer": [], "ns": [], "extra": []}
    current: str | None = None
    for line in out.splitlines():
        header = re.match(r";; (\w+) SECTION:", line)
        if header:
            current = SECTIONS.get(header.group(1))
        elif not line.strip():
            current = None
        elif current is not None and not line.startswith(";"):
            sections[current].extend(str(rr) for rr in RR.fromZone(line))
    return DigReply(status.group(1), set(flags.group(1).split()), sections)


def check_dig(case: Case, out: str, *, not_before: float) -> None:
    """Compare dig's output with `case`; the SOA serial (another process's store) must be one
    time, the Unix time of a list made since `not_before`."""
    got = parse_dig(out)
    label = f"{case.qname} {case.qtype}"
    serials = got.serials()
    assert len(serials) <= 1, f"{label}: {out}"
    for serial in serials:
        assert not_before - 1 <= serial <= time.time() + 1, f"{label}: serial {serial}"
        case = with_serial(case, serial)
    assert got.status == case.rcode, f"{label}: {out}"
    assert case.flags is not None and got.flags == set(case.flags.split()), f"{label}: {out}"
    for name, want in (("answer", case.answer), ("ns", case.ns), ("extra", case.extra)):
        want_text = [str(rr) for line in want for rr in RR.fromZone(line)]
        assert sorted(got.sections[name]) == sorted(want_text), f"{label} {name}: {out}"


async def ns_http(ns: NetNS, url: str) -> tuple[int, str]:
    """GET `url` with curl inside the namespace: (status, body)."""
    done = await ns.run("curl", "-s", "-m", "5", "-w", "\n%{http_code}", url)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


async def ip(*args: str) -> None:
    """Run `ip` (in the root namespace, where only namespaces are named, nothing is changed)."""
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(WAIT_S):
        _, err = await proc.communicate()
    assert proc.returncode == 0, f"ip {' '.join(args)}: {err.decode()}"


async def link(pod: NetNS, node: NetNS) -> None:
    """A veth pair created directly inside the two namespaces (so it disappears with them):
    POD_IP on the pod's end, NODE_IP on the node's."""
    await ip(
        *("link", "add", "eth0", "netns", pod.name, "type", "veth"),
        *("peer", "name", "eth0", "netns", node.name),
    )
    for ns, address in ((pod, POD_IP), (node, NODE_IP)):
        await ip("-n", ns.name, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", "eth0")
        await ip("-n", ns.name, "link", "set", "eth0", "up")


async def quit_server(proc: asyncio.subprocess.Process) -> str:
    """Stop the server at once (SIGQUIT: no lameduck, spec §22.2); return everything it printed."""
    proc.send_signal(signal.SIGQUIT)
    assert proc.stdout is not None and proc.stderr is not None
    async with asyncio.timeout(WAIT_S):
        out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
        await proc.wait()
    return (out + err).decode(errors="replace")


@dataclass
class Pod:
    """The CLI serving the reference Corefile in the "pod" namespace, its upstream next door."""

    ns: NetNS
    server: asyncio.subprocess.Process
    stub: asyncio.subprocess.Process
    printed: list[str]
    """What the server printed up to its version line."""


@contextlib.asynccontextmanager
async def reference_pod(form: CacheForm, tmp_path: Path) -> AsyncIterator[Pod]:
    """Run `clusterdns -conf` with the reference Corefile (plus `from_yaml`) in a namespace.

    The server binds the wildcard :53 as the Corefile says, so the upstream cannot share its
    namespace (not even on 127.0.0.2:53, which Linux refuses next to a wildcard bind): the stub
    runs in a second namespace, the "node", joined to the pod's by a veth pair, and the pod's
    resolv.conf names the node's address. Nothing can route off the machine.
    """
    reason = unavailable()
    if reason:
        pytest.fail(f"network namespaces are required for this test: {reason}")
    corefile = tmp_path / "Corefile"
    corefile.write_text(reference_corefile(form, in_process=False))
    async with (
        network_namespace(prefix="kref-pod", nameservers=(NODE_IP,)) as pod,
        network_namespace(prefix="kref-node") as node,
    ):
        await link(pod, node)
        # The script serves the reference upstream's records; add the rest of the stub's zone.
        more = [line for line in STUB_RECORDS if line not in DEFAULT_RECORDS]
        records = [arg for line in more for arg in ("--record", line)]
        stub = await node.spawn(
            *(sys.executable, "-m", "tests.upstream", "--host", NODE_IP, "--port", "53"),
            *records,
            "--log",
            cwd=ROOT,
        )
        await read_line(stub, lambda line: line.startswith("listening on"), timeout_s=WAIT_S)
        server = await pod.spawn(
            sys.executable, "-m", "clusterdns", "-conf", str(corefile), cwd=ROOT
        )
        printed: list[str] = []
        await read_line(server, lambda line: line.startswith("clusterdns-"), seen=printed)
        yield Pod(pod, server, stub, printed)


@pytest.mark.parametrize("form", list(CacheForm), ids=lambda f: f.id)
async def test_reference_corefile_in_a_network_namespace(form: CacheForm, tmp_path: Path) -> None:
    started = time.time()
    async with reference_pod(form, tmp_path) as pod:
        assert ".:53" in pod.printed, pod.printed
        # Spec §22.1 step 5: the banner's zone lines, then reload's digest, then the versions.
        digest = re.compile(
            r"^\[INFO\] plugin/reload: Running configuration SHA512 = [0-9a-f]{128}$"
        )
        assert any(digest.match(line) for line in pod.printed), pod.printed
        # The loop plugin's probe went out through forward to the resolv.conf upstream.
        probe = re.compile(r"query udp \d+\.\d+\. HINFO ")
        await read_line(pod.stub, lambda line: bool(probe.match(line)), timeout_s=WAIT_S)

        for label in DIG_EXAMPLES:
            qname, qtype = label.rsplit(" ", 1)
            done = await pod.ns.run("dig", "@127.0.0.1", qname, qtype, "+tries=1", "+time=5")
            assert done.returncode == 0, done.stdout + done.stderr
            check_dig(example(label).case, done.stdout, not_before=started)

        assert await ns_http(pod.ns, "http://127.0.0.1:8080/health") == (200, "OK")
        assert await ns_http(pod.ns, "http://127.0.0.1:8181/ready") == (200, "OK")
        status, metrics = await ns_http(pod.ns, "http://127.0.0.1:9153/metrics")
        assert status == 200
        assert "clusterdns_loop_detected{" not in metrics
        printed = "\n".join(pod.printed) + "\n" + await quit_server(pod.server)
        for word in ("Loop", "[ERROR]", "[FATAL]", "[WARNING]"):
            assert word not in printed, printed
