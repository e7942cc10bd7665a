"""Test helpers for the kubernetes plugin: YAML fixtures -> Store, a stand-in upstream, plugins
built from Corefile text exactly as setup would parse them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

import yaml
from dnslib import RR

from clusterdns.chain.fastpath import Generations
from clusterdns.chain.handler import Handler
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.request import Request
from clusterdns.chain.setup import BlockSettings
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import parse as parse_corefile
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.zones import parse_key
from clusterdns.k8s.objects import KIND_OF_API, Kind, Object, from_api
from clusterdns.k8s.store import Store
from clusterdns.plugins.kubernetes.config import KubernetesConfig, LabelSelector, parse
from clusterdns.plugins.kubernetes.handler import Kubernetes
from tests.dnstest import Case, RecordingWriter

FIXTURES: Final = Path(__file__).resolve().parents[2] / "fixtures" / "k8s"
REFERENCE_YAML: Final = FIXTURES / "reference.yaml"
EDGE_YAML: Final = FIXTURES / "edge.yaml"

NOW: Final = 1_700_000_000.0
SERIAL: Final = int(NOW)

ALL_KINDS: Final = (Kind.NAMESPACE, Kind.SERVICE, Kind.ENDPOINTSLICE, Kind.POD)


def soa(
    zone: str = "cluster.local.", ttl: int = 30, serial: int = SERIAL, rttl: int | None = None
) -> str:
    """The plugin's SOA record for `zone` as zone-file text."""
    record_ttl = min(ttl, 300) if rttl is None else rttl
    return (
        f"{zone} {record_ttl} IN SOA ns.dns.{zone} hostmaster.{zone} {serial} 7200 1800 86400 {ttl}"
    )


SOA: Final = soa()


def load_objects(
    *paths: Path, namespace_labels: LabelSelector | None = None
) -> dict[Kind, list[Object]]:
    """Read multi-document Kubernetes YAML through the production converter, by kind.

    `namespace_labels` filters Namespaces as the API server does for the namespace watch.
    """
    out: dict[Kind, list[Object]] = {kind: [] for kind in ALL_KINDS}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            data: dict[str, Any] = doc
            kind = KIND_OF_API[data["kind"]]
            labels = (data.get("metadata") or {}).get("labels") or {}
            if kind is Kind.NAMESPACE and namespace_labels and not namespace_labels.matches(labels):
                continue
            obj = from_api(kind, data)
            if obj is not None:
                out[kind].append(obj)
    return out


def load_store(
    *paths: Path,
    kinds: Iterable[Kind] = ALL_KINDS,
    clock: float = NOW,
    namespace_labels: LabelSelector | None = None,
) -> Store:
    """A synced Store holding the objects of `paths` (only `kinds` listed; all are expected)."""
    store = Store(clock=lambda: clock)
    store.expect(ALL_KINDS)
    objects = load_objects(*paths, namespace_labels=namespace_labels)
    for kind in kinds:
        store.replace(kind, objects[kind])
    return store


UPSTREAM_DATA: Final[dict[str, tuple[str, ...]]] = {
    "db.example.com.": ("db.example.com. 300 IN A 192.0.2.50",),
    "example.com.": ("example.com. 3600 IN A 93.184.215.14",),
    "8.8.8.8.in-addr.arpa.": ("8.8.8.8.in-addr.arpa. 300 IN PTR dns.google.",),
}


@dataclass
class Upstream:
    """Stands in for `forward`: a recursive resolver answering from UPSTREAM_DATA.

    Known names answer NOERROR with their records of the asked type (maybe none), unknown names
    NXDOMAIN; flags `qr rd ra`. Every query is recorded as "qname TYPE".
    """

    name: ClassVar[str] = "forward"
    calls: list[str] = field(default_factory=list)
    truncate: bool = False

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.calls.append(f"{req.qname} {req.type_name}")
        reply = req.reply(aa=False)
        reply.header.ra = 1
        if self.truncate:
            reply.header.tc = 1
        records = UPSTREAM_DATA.get(req.name)
        if records is None:
            reply.header.rcode = rc.NXDOMAIN
        else:
            for line in records:
                for rr in RR.fromZone(line):
                    if rr.rtype == req.qtype:
                        reply.add_answer(rr)
        w.write(reply, self.name)
        return int(reply.header.rcode)


def kubernetes_config(corefile: str) -> KubernetesConfig:
    """Parse the first block's `kubernetes` lines of a Corefile with the plugin's parser."""
    blocks = parse_corefile(corefile, "Corefile", DIRECTIVES)
    block = blocks[0]
    zones = [z.zone for key in block.keys for z in parse_key(key.text, 53)]
    return parse(block.lines_of("kubernetes"), zones)


def reference_corefile(
    options: str = "", zones: str = "cluster.local in-addr.arpa ip6.arpa"
) -> str:
    """The reference (kubeadm) kubernetes block, with extra option lines."""
    return f""".:53 {{
    kubernetes {zones} {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
       {options}
    }}
    forward . /etc/resolv.conf
}}
"""


IN_CLUSTER: Final = ["10.244.0.2"]
"""The server under test is the kube-dns pod 10.244.0.2."""
OUTSIDE: Final = ["192.0.2.7"]


@dataclass
class Setup:
    """A kubernetes plugin in front of an Upstream, in a block whose chain starts with it."""

    plugin: Kubernetes
    upstream: Upstream
    store: Store
    block: BlockSettings
    generations: Generations


def make_plugin(
    corefile: str | KubernetesConfig,
    store: Store,
    *,
    local: list[str] | None = None,
    head: bool = True,
    upstream: Upstream | None = None,
) -> Setup:
    """Build the plugin as the chain would: next = Upstream, block head = the plugin itself."""
    config = corefile if isinstance(corefile, KubernetesConfig) else kubernetes_config(corefile)
    up = upstream or Upstream()
    block = BlockSettings(
        index=0,
        keys=tuple(parse_key(".", 53)),
        file="Corefile",
        line=1,
        directives=("kubernetes", "forward"),
    )
    addresses = IN_CLUSTER if local is None else local
    source: Callable[[], list[str]] = lambda: list(addresses)  # noqa: E731
    generations = Generations()
    plugin = Kubernetes(config, store, up, block, source, generations)
    if head:
        chain: Handler = plugin
        block.head = chain
    return Setup(plugin, up, store, block, generations)


AA: Final = "qr aa rd"
FORWARDED: Final = "qr rd ra"


@dataclass(frozen=True, kw_only=True)
class K8sCase(Case):
    """A Case plus its setting: extra option lines, the server's own addresses, the cluster
    files, the plugin zones, and the queries the upstream stand-in must have seen."""

    upstream: tuple[str, ...] = ()
    """Queries that reached the upstream stand-in, in order, as "qname TYPE"."""
    local: tuple[str, ...] = tuple(IN_CLUSTER)
    options: str = ""
    files: tuple[Path, ...] = (REFERENCE_YAML,)
    zones: str = "cluster.local in-addr.arpa ip6.arpa"

    def label(self) -> str:
        parts = [f"{self.qname} {self.qtype}"]
        if self.options:
            parts.append(f"[{self.options}]")
        if self.local != tuple(IN_CLUSTER):
            parts.append(f"[own {','.join(self.local) or 'none'}]")
        if self.zones != "cluster.local in-addr.arpa ip6.arpa":
            parts.append(f"[zones {self.zones}]")
        return " ".join(parts)

    def setup(self) -> Setup:
        config = kubernetes_config(reference_corefile(self.options, self.zones))
        store = load_store(*self.files, namespace_labels=config.namespace_labels)
        return make_plugin(config, store, local=list(self.local))

    async def run(self) -> None:
        """Serve the query, then check the reply, the returned rcode and the upstream calls."""
        s = self.setup()
        req = self.request()
        w = RecordingWriter(req)
        code = await s.plugin.serve(req, w)
        self.check(w.reply())
        assert code == rc.RCODES_BY_NAME[self.rcode], f"{self.label()}: returned {code}"
        assert s.upstream.calls == list(self.upstream), f"{self.label()}: {s.upstream.calls}"


def nx(qname: str, qtype: str = "A", **kw: Any) -> K8sCase:
    """An authoritative NXDOMAIN with the cluster.local SOA."""
    kw.setdefault("ns", [SOA])
    return K8sCase(qname=qname, qtype=qtype, rcode="NXDOMAIN", flags=AA, **kw)


def nodata(qname: str, qtype: str = "A", **kw: Any) -> K8sCase:
    """An authoritative NOERROR without answers, with the cluster.local SOA."""
    kw.setdefault("ns", [SOA])
    return K8sCase(qname=qname, qtype=qtype, flags=AA, **kw)


def ok(
    qname: str, qtype: str, answer: list[str], extra: list[str] | None = None, **kw: Any
) -> K8sCase:
    """An authoritative positive answer."""
    return K8sCase(qname=qname, qtype=qtype, answer=answer, extra=extra or [], flags=AA, **kw)


def forwarded(
    qname: str,
    qtype: str = "A",
    rcode: str = "NXDOMAIN",
    answer: list[str] | None = None,
    **kw: Any,
) -> K8sCase:
    """A reply written by the upstream stand-in after the plugin passed the query on."""
    return K8sCase(
        qname=qname,
        qtype=qtype,
        rcode=rcode,
        flags=FORWARDED,
        answer=answer or [],
        upstream=(f"{qname} {qtype}",),
        **kw,
    )
