"""clusterdns against CoreDNS and a C server, per scenario, in one run on this machine.

    .venv/bin/python bench/run.py            # about 10 minutes: both clusters, 5 s per run
    .venv/bin/python bench/run.py --quick    # about 2 minutes: the reference cluster, 2 s runs

Everything runs on loopback. The load generator is `dnsperf`; it and the server under test are
pinned to different cores with `taskset` (load generator, upstream and API double on the first
core, the server on the second). Missing Debian packages (dnsperf, dnsmasq-base, knot,
util-linux) are installed with apt-get first, and matplotlib with pip into this interpreter's
environment; the run says so when it does.

Servers, one at a time, each serving the same cluster:

- clusterdns: the kubeadm Corefile (spec §0.3, the new cache form), `bind 127.0.0.1`, the cluster
  read from the Kubernetes API test double (`tests/k8s/fakeapi.py`) through `endpoint`, names
  outside the cluster forwarded to the loopback upstream;
- CoreDNS: the same Corefile, the pinned release built by `scripts/test-realcluster`
  (`GOMAXPROCS=1`; `KUBE_FEATURE_WatchListClient=false`, since the API double has no watch-list
  streaming); reported as not built when its binary is absent;
- knot (C): the scenario names as static zones (`cluster.local.` with its SOA, `example.`), one
  UDP and one TCP worker; authoritative only, so it does not run scenario 6;
- dnsmasq (C, single-threaded, what kube-dns ran): the same records from static data
  (`addn-hosts`, `srv-host`, `local=/cluster.local/` for NXDOMAIN), the rest forwarded to the
  same upstream with its cache.

The C floor of a scenario is whichever C server spent less CPU per query.

The upstream for forwarded names is knot (C, authoritative for `example.`: 100 names with TTL 300
and a wildcard `*.miss.example.`), pinned with the load generator.

Scenarios (one query file each; the cluster is the reference cluster of spec §0.4 plus a
`bench/pool` headless service with 20 ready endpoints, and separately a synthetic cluster of
10,000 Services with 15 endpoints each plus the same objects):

1. ClusterIP A: A queries for ClusterIP services;
2. SRV: `_port._proto.svc.ns.svc.cluster.local` for named ports (one glue address each);
3. headless: A for the 20-endpoint headless service (20 addresses, shuffled by loadbalance);
4. ndots:5: per external name, 4 NXDOMAINs in the cluster zone (the search suffixes
   `prod.svc.cluster.local`, `svc.cluster.local`, `cluster.local` and `default.svc.cluster.local`)
   then the name itself, answered from the cache;
5. external cached: the 100 upstream names, answered from the cache;
6. external misses: unique names under `miss.example.`, each forwarded to the upstream;
7. TCP: scenario 1 over TCP (`dnsperf -m tcp`: 4 connections, up to 100 queries in flight).

Per scenario and server: max qps (`dnsperf -c 4 -q 100 -Q 500000 -l S`), server CPU µs per
query at that load (utime+stime from /proc of the server process and its children, divided by
the completed queries), p50/p99 latency at an offered 5,000 qps (`-Q 5000 -v`, every reply's
latency) and how long the server waited for its CPU meanwhile (/proc schedstat: other work on
its core), RSS after the run; for clusterdns also the share of queries the fast path answered.
Ratios: clusterdns/CoreDNS and clusterdns/C floor of µs per query. Results go to
`bench/results/latest.md`, `latest.json` and `latest.png` (`--publish` also copies the chart to
`docs/bench.png`). Exit status 0 when the run completed (read the table for the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import psutil
import yaml

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.k8s.fakeapi import (  # noqa: E402
    synthetic_service_ip,
    synthetic_service_key,
)
from tests.ports import free_udp_tcp_port  # noqa: E402

RESULTS: Final = ROOT / "bench" / "results"
REFERENCE_YAML: Final = ROOT / "tests" / "fixtures" / "k8s" / "reference.yaml"
COREDNS_CACHE: Final = "clusterdns-realcluster"
LOADGEN_CPU: Final = "0"
SERVER_CPU: Final = "1"
FIXED_QPS: Final = 5000
MAX_QPS: Final = 500_000
EXTERNAL_NAMES: Final = 100
POOL_SIZE: Final = 20
SYNTHETIC_SERVICES: Final = 10_000
SYNTHETIC_ENDPOINTS: Final = 15
SYNTHETIC_NAMESPACES: Final = 100
READY_TIMEOUT_S: Final = 180.0
APT_PACKAGES: Final = {
    "dnsperf": "dnsperf",
    "dnsmasq": "dnsmasq-base",
    "knotd": "knot",
    "taskset": "util-linux",
}

SERVERS: Final = ("clusterdns", "coredns", "knot", "dnsmasq")
LABELS: Final = {
    "clusterdns": "clusterdns",
    "coredns": "CoreDNS",
    "knot": "knot (C)",
    "dnsmasq": "dnsmasq (C)",
}
FLOORS: Final = ("knot", "dnsmasq")
"""The C servers; per scenario the C floor is the one with the lower µs per query."""
AUTHORITATIVE_ONLY: Final = frozenset({"6"})
"""Scenarios knot (authoritative, no forwarding) does not run."""


def say(text: str) -> None:
    """One progress line on stderr."""
    print(text, file=sys.stderr, flush=True)


# -- preparation -----------------------------------------------------------------------------------


def ensure_tools(allow_install: bool) -> None:
    """Install missing Debian packages and matplotlib, saying what is installed."""
    missing = sorted({pkg for exe, pkg in APT_PACKAGES.items() if shutil.which(exe) is None})
    if missing:
        if not allow_install:
            raise SystemExit(f"missing tools: {', '.join(missing)} (run without --no-install)")
        prefix = [] if os.geteuid() == 0 else ["sudo"]
        say(f"installing with apt-get: {' '.join(missing)}")
        subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(
            [*prefix, "apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    if importlib.util.find_spec("matplotlib") is None:
        if not allow_install:
            raise SystemExit("matplotlib is missing (pip install matplotlib)")
        say(f"installing matplotlib with pip into {sys.prefix}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "matplotlib"],
            check=True,
        )


def coredns_binary() -> Path | None:
    """The CoreDNS that scripts/test-realcluster built, if there is one."""
    versions = (ROOT / "realcluster" / "versions.env").read_text()
    pins = dict(
        line.split("=", 1) for line in versions.splitlines() if "=" in line and line[0] != "#"
    )
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / COREDNS_CACHE
    name = "k8s-{}_coredns-{}_etcd-{}".format(
        pins["K8S_VERSION"].lstrip("v"),
        pins["COREDNS_VERSION"].lstrip("v"),
        pins["ETCD_VERSION"].lstrip("v"),
    )
    binary = cache / name / "bin" / "coredns"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


# -- the clusters and their query files ------------------------------------------------------------


@dataclass
class Cluster:
    """What the servers serve and the names the scenarios ask for."""

    name: str
    title: str
    api_args: list[str]
    addresses: dict[str, str]
    """A-record name -> address (ClusterIP services the scenarios ask for)."""
    srv: list[tuple[str, str, int, str]]
    """(SRV name, target, port, target address)."""
    pool: list[str] = field(default_factory=list)


def extras_yaml(path: Path) -> Path:
    """The objects every cluster gets: namespace `bench`, headless `pool` with 20 endpoints."""
    endpoints = "".join(
        f"  - addresses: [10.244.200.{i + 1}]\n    conditions: {{ready: true}}\n"
        for i in range(POOL_SIZE)
    )
    path.write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: pool\n  namespace: bench\n"
        "spec:\n  type: ClusterIP\n  clusterIP: None\n  clusterIPs: [None]\n"
        "  ports:\n    - {name: http, port: 80, protocol: TCP}\n---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: pool-1\n"
        "  namespace: bench\n  labels:\n    kubernetes.io/service-name: pool\n"
        f"addressType: IPv4\nendpoints:\n{endpoints}"
        "ports:\n  - {name: http, port: 80, protocol: TCP}\n"
    )
    return path


def reference_cluster(extras: Path) -> Cluster:
    """The reference cluster of spec §0.4 (from its YAML) plus the bench objects."""
    addresses: dict[str, str] = {}
    for doc in yaml.safe_load_all(REFERENCE_YAML.read_text()):
        if not doc or doc.get("kind") != "Service":
            continue
        spec, meta = doc["spec"], doc["metadata"]
        ip = spec.get("clusterIP")
        if spec.get("type", "ClusterIP") == "ClusterIP" and ip and ip != "None":
            addresses[f"{meta['name']}.{meta['namespace']}.svc.cluster.local."] = ip
    srv = [
        (
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            "kubernetes.default.svc.cluster.local.",
            443,
            "10.96.0.1",
        ),
        (
            "_dns._udp.kube-dns.kube-system.svc.cluster.local.",
            "kube-dns.kube-system.svc.cluster.local.",
            53,
            "10.96.0.10",
        ),
        (
            "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local.",
            "kube-dns.kube-system.svc.cluster.local.",
            53,
            "10.96.0.10",
        ),
        (
            "_metrics._tcp.kube-dns.kube-system.svc.cluster.local.",
            "kube-dns.kube-system.svc.cluster.local.",
            9153,
            "10.96.0.10",
        ),
    ]
    return Cluster(
        "reference",
        "reference cluster (spec §0.4) + a 20-endpoint headless service",
        ["--yaml", str(REFERENCE_YAML), "--yaml", str(extras)],
        addresses,
        srv,
        [f"10.244.200.{i + 1}" for i in range(POOL_SIZE)],
    )


def synthetic_cluster(extras: Path, sample: int = 1000) -> Cluster:
    """10,000 Services (15 endpoints each) in 100 namespaces, plus the reference objects."""
    base = reference_cluster(extras)
    addresses: dict[str, str] = {}
    srv: list[tuple[str, str, int, str]] = []
    step = SYNTHETIC_SERVICES // sample
    for i in range(0, SYNTHETIC_SERVICES, step):
        ns, name = synthetic_service_key(i, SYNTHETIC_NAMESPACES)
        owner = f"{name}.{ns}.svc.cluster.local."
        addresses[owner] = synthetic_service_ip(i)
        srv.append((f"_http._tcp.{owner}", owner, 80, synthetic_service_ip(i)))
    return Cluster(
        "synthetic",
        f"synthetic cluster: {SYNTHETIC_SERVICES:,} Services x {SYNTHETIC_ENDPOINTS} endpoints "
        "+ the reference objects",
        [
            "--services",
            str(SYNTHETIC_SERVICES),
            "--endpoints-per-slice",
            str(SYNTHETIC_ENDPOINTS),
            "--namespaces",
            str(SYNTHETIC_NAMESPACES),
            *base.api_args,
        ],
        addresses,
        srv,
        base.pool,
    )


@dataclass(frozen=True)
class Scenario:
    """One query file and its transport."""

    key: str
    title: str
    proto: str = "udp"
    fresh: bool = False
    """Each run needs names never asked before (a new file per run)."""


SCENARIOS: Final = (
    Scenario("1", "ClusterIP A"),
    Scenario("2", "SRV named port"),
    Scenario("3", "headless, 20 endpoints"),
    Scenario("4", "ndots:5 search mix"),
    Scenario("5", "external, cached"),
    Scenario("6", "external, forwarded", fresh=True),
    Scenario("7", "TCP pipelined (ClusterIP A)", proto="tcp"),
)
SEARCH_SUFFIXES: Final = (
    "prod.svc.cluster.local.",
    "svc.cluster.local.",
    "cluster.local.",
    "default.svc.cluster.local.",
)


def external(i: int) -> str:
    """External name `i` (the upstream knows it)."""
    return f"www{i}.example."


def query_lines(cluster: Cluster, scenario: Scenario, run: str, count: int) -> list[str]:
    """The dnsperf input of one scenario (`count` only matters for fresh names)."""
    match scenario.key:
        case "1" | "7":
            return [f"{name} A" for name in cluster.addresses]
        case "2":
            return [f"{name} SRV" for name, _, _, _ in cluster.srv]
        case "3":
            return ["pool.bench.svc.cluster.local. A"]
        case "4":
            lines: list[str] = []
            for i in range(EXTERNAL_NAMES):
                bare = external(i)[:-1]
                lines.extend(f"{bare}.{suffix} A" for suffix in SEARCH_SUFFIXES)
                lines.append(f"{external(i)} A")
            return lines
        case "5":
            return [f"{external(i)} A" for i in range(EXTERNAL_NAMES)]
        case "6":
            return [f"r{run}x{i}.miss.example. A" for i in range(count)]
    raise ValueError(scenario.key)


# -- the servers ----------------------------------------------------------------------------------


COREFILE: Final = """.:{port} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{health} {{
       lameduck 5s
    }}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       endpoint {api}
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus 127.0.0.1:{metrics}
    forward . 127.0.0.1:{upstream} {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success cluster.local
       disable denial cluster.local
    }}
    loop
{reload}    loadbalance
}}
"""


@dataclass
class Running:
    """A server process under test."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int = 0
    log: Path | None = None

    def tree(self) -> list[psutil.Process]:
        main = psutil.Process(self.proc.pid)
        return [main, *main.children(recursive=True)]

    def cpu_s(self) -> float:
        """CPU seconds of the process, its live children and the children it reaped."""
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def queued_s(self) -> float:
        """Seconds the server's threads spent runnable but waiting for a CPU (/proc schedstat).

        That is other work on its core: the cause of millisecond tails on a shared machine.
        """
        total = 0
        for p in self.tree():
            with contextlib.suppress(OSError, ValueError, IndexError):
                for task in Path(f"/proc/{p.pid}/task").iterdir():
                    total += int((task / "schedstat").read_text().split()[1])
        return total / 1e9

    def rss_mb(self) -> float:
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def fastpath_hits(self) -> float | None:
        """clusterdns_fastpath_hits_total, for clusterdns."""
        if not self.metrics_port:
            return None
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("clusterdns_fastpath_hits_total"):
                    return float(line.split()[-1])
            return 0.0
        return None

    def stop(self) -> None:
        """SIGKILL (lameduck would only add seconds) and reap."""
        with contextlib.suppress(ProcessLookupError):
            for p in reversed(self.tree()):
                with contextlib.suppress(psutil.Error):
                    p.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


def spawn(
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    cpu: str = SERVER_CPU,
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """Start a pinned process (`python -m` puts `cwd` first on its path)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            pinned(cpu, argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        url = f"http://127.0.0.1:{port}{path}"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{path} not ready after {timeout_s:.0f} s")


def wait_dns(port: int, name: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until `name` A gets a NOERROR reply with an answer."""
    query = dns_query(name)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            try:
                s.sendto(query, ("127.0.0.1", port))
                reply = s.recv(4096)
                if len(reply) > 12 and reply[3] & 0x0F == 0 and reply[6:8] != b"\x00\x00":
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} not answered after {timeout_s:.0f} s")


def dns_query(name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"


@dataclass
class Context:
    """Shared by every server of one cluster."""

    work: Path
    cluster: Cluster
    api: str
    upstream: int
    tree: Path | None
    coredns: Path | None
    reload: bool


def start_kubernetes_server(ctx: Context, name: str) -> Running:
    port, health, ready, metrics = (free_udp_tcp_port() for _ in range(4))
    corefile = ctx.work / f"Corefile.{name}"
    corefile.write_text(
        COREFILE.format(
            port=port,
            health=health,
            ready=ready,
            metrics=metrics,
            api=ctx.api,
            upstream=ctx.upstream,
            reload="    reload\n" if ctx.reload else "",
        )
    )
    log = ctx.work / f"{ctx.cluster.name}-{name}.log"
    env = dict(os.environ)
    if name == "clusterdns":
        if ctx.tree is not None:
            env["PYTHONPATH"] = str(ctx.tree)
        argv = [sys.executable, "-m", "clusterdns", "-conf", str(corefile)]
    else:
        assert ctx.coredns is not None
        env.update(GOMAXPROCS="1", KUBE_FEATURE_WatchListClient="false")
        argv = [str(ctx.coredns), "-conf", str(corefile)]
    proc = spawn(argv, log, env, cwd=ctx.tree or ROOT)
    running = Running(name, proc, port, metrics if name == "clusterdns" else 0, log)
    try:
        wait_http(ready, "/ready", proc, READY_TIMEOUT_S)
        wait_dns(port, next(iter(ctx.cluster.addresses)), proc, READY_TIMEOUT_S)
    except RuntimeError as exc:
        running.stop()
        raise RuntimeError(f"{name}: {exc}; log: {log}") from exc
    return running


def start_dnsmasq(ctx: Context) -> Running:
    port = free_udp_tcp_port()
    hosts = ctx.work / f"{ctx.cluster.name}.hosts"
    lines = [f"{ip} {name.rstrip('.')}" for name, ip in ctx.cluster.addresses.items()]
    lines += [f"{ip} pool.bench.svc.cluster.local" for ip in ctx.cluster.pool]
    lines += [f"{ip} {target.rstrip('.')}" for _, target, _, ip in ctx.cluster.srv]
    hosts.write_text("\n".join(dict.fromkeys(lines)) + "\n")
    conf = ctx.work / f"{ctx.cluster.name}.dnsmasq.conf"
    srv = [
        f"srv-host={name.rstrip('.')},{target.rstrip('.')},{p},0,100"
        for name, target, p, _ in ctx.cluster.srv
    ]
    conf.write_text(
        "\n".join(
            [
                f"port={port}",
                "listen-address=127.0.0.1",
                "bind-interfaces",
                "no-resolv",
                "no-hosts",
                "no-poll",
                "user=root",
                f"server=127.0.0.1#{ctx.upstream}",
                "cache-size=10000",
                "dns-forward-max=1000",
                "local-ttl=30",
                "local=/cluster.local/",
                f"addn-hosts={hosts}",
                f"pid-file={ctx.work / 'dnsmasq.pid'}",
                *srv,
            ]
        )
        + "\n"
    )
    log = ctx.work / f"{ctx.cluster.name}-dnsmasq.log"
    proc = spawn(["dnsmasq", "-k", "--log-facility=-", "-C", str(conf)], log)
    running = Running("dnsmasq", proc, port, 0, log)
    try:
        wait_dns(port, next(iter(ctx.cluster.addresses)), proc, 30)
    except RuntimeError as exc:
        running.stop()
        raise RuntimeError(f"dnsmasq: {exc}; log: {log}") from exc
    return running


def knot_conf(knot: Path, port: int, zones: dict[str, Path], workers: bool) -> Path:
    """A knot configuration serving `zones` (name -> file) on 127.0.0.1:port."""
    text = f'server:\n    rundir: "{knot}"\n    user: root:root\n    listen: 127.0.0.1@{port}\n'
    if workers:
        text += "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
    text += f'database:\n    storage: "{knot}"\nlog:\n  - target: stderr\n    any: warning\nzone:\n'
    for name, path in zones.items():
        text += f'  - domain: {name}\n    file: "{path}"\n    semantic-checks: off\n'
    conf = knot / "knot.conf"
    conf.write_text(text)
    return conf


def example_zone(path: Path) -> Path:
    """`example.`: the external names (TTL 300) and a wildcard for never-asked names."""
    records = "".join(f"www{i} IN A 192.0.2.{i % 250 + 1}\n" for i in range(EXTERNAL_NAMES))
    path.write_text(
        "$ORIGIN example.\n$TTL 300\n"
        "@ IN SOA ns.example. hostmaster.example. 1 7200 3600 1209600 300\n"
        "@ IN NS ns.example.\nns IN A 192.0.2.53\n*.miss IN A 192.0.2.99\n" + records
    )
    return path


def start_knot(ctx: Context) -> Running:
    """Start knot as a C floor: the scenario names as static zones, one UDP and TCP worker."""
    port = free_udp_tcp_port()
    knot = ctx.work / f"knot-{ctx.cluster.name}"
    knot.mkdir(exist_ok=True)
    lines = [
        "$ORIGIN cluster.local.",
        "$TTL 30",
        "@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30",
        "@ IN NS ns.dns.cluster.local.",
        "ns.dns IN A 10.96.0.10",
    ]
    rel = ".cluster.local."
    records = [f"{name[: -len(rel)]} IN A {ip}" for name, ip in ctx.cluster.addresses.items()]
    records += [f"pool.bench.svc IN A {ip}" for ip in ctx.cluster.pool]
    for name, target, port_number, ip in ctx.cluster.srv:
        records.append(f"{name[: -len(rel)]} IN SRV 0 100 {port_number} {target}")
        records.append(f"{target[: -len(rel)]} IN A {ip}")
    zone = knot / "cluster.local.zone"
    zone.write_text("\n".join([*lines, *dict.fromkeys(records)]) + "\n")
    conf = knot_conf(
        knot, port, {"cluster.local.": zone, "example.": example_zone(knot / "x.zone")}, True
    )
    log = ctx.work / f"{ctx.cluster.name}-knot.log"
    proc = spawn(["knotd", "-c", str(conf)], log)
    running = Running("knot", proc, port, 0, log)
    try:
        wait_dns(port, next(iter(ctx.cluster.addresses)), proc, 60)
    except RuntimeError as exc:
        running.stop()
        raise RuntimeError(f"knot: {exc}; log: {log}") from exc
    return running


def start_upstream(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the upstream: knot, authoritative for `example.`, pinned with the load generator."""
    port = free_udp_tcp_port()
    knot = work / "upstream"
    knot.mkdir()
    conf = knot_conf(knot, port, {"example.": example_zone(knot / "example.zone")}, False)
    proc = spawn(["knotd", "-c", str(conf)], work / "upstream.log", cpu=LOADGEN_CPU)
    wait_dns(port, "www0.example.", proc, 30)
    return proc, port


@contextlib.contextmanager
def api_double(work: Path, cluster: Cluster) -> Iterator[str]:
    """The Kubernetes API test double serving the cluster; yields its URL."""
    log = work / f"{cluster.name}-fakeapi.log"
    argv = pinned(LOADGEN_CPU, [sys.executable, "-m", "tests.k8s.fakeapi", *cluster.api_args])
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the API double did not start; log: {log}")
        yield str(json.loads(line)["api"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- load -----------------------------------------------------------------------------------------


@dataclass
class Perf:
    """What one dnsperf run reported."""

    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    rcodes: str = ""
    latencies_us: list[float] = field(default_factory=list)


def dnsperf(port: int, data: Path, *, qps: int, seconds: float, proto: str, verbose: bool) -> Perf:
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-t", "2"]
    argv += ["-c", "4", "-Q", str(qps), "-l", f"{seconds:g}", "-m", proto]
    if verbose:
        argv.append("-v")
    out = subprocess.run(
        pinned(LOADGEN_CPU, argv),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    ).stdout
    perf = Perf()
    for line in out.splitlines():
        text = line.strip()
        if verbose and text.startswith(">"):
            with contextlib.suppress(ValueError, IndexError):
                perf.latencies_us.append(float(text.rsplit(" ", 1)[1]) * 1e6)
        elif text.startswith("Queries sent:"):
            perf.sent = int(text.split()[2])
        elif text.startswith("Queries completed:"):
            perf.completed = int(text.split()[2])
        elif text.startswith("Queries lost:"):
            perf.lost = int(text.split()[2])
        elif text.startswith("Queries per second:"):
            perf.qps = float(text.split()[3])
        elif text.startswith("Response codes:"):
            perf.rcodes = text.split(":", 1)[1].strip()
    return perf


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Row:
    """One (cluster, scenario, server) measurement."""

    cluster: str
    scenario: str
    server: str
    qps: float = float("nan")
    us_per_query: float = float("nan")
    lost_pct: float = float("nan")
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    fixed_lost_pct: float = float("nan")
    rss_mb: float = float("nan")
    fastpath_pct: float | None = None
    queued_ms_per_s: float = float("nan")
    """Run-queue wait of the server during the fixed-rate run, ms per second."""
    rcodes: str = ""
    note: str = ""


def measure(
    running: Running, cluster: Cluster, scenario: Scenario, work: Path, seconds: float, warm: float
) -> Row:
    row = Row(cluster.name, scenario.key, running.name)

    def qfile(run: str, rate: float, duration: float) -> Path:
        path = work / f"{cluster.name}-{scenario.key}-{running.name}-{run}.txt"
        count = int(rate * duration * 1.5) + 1000
        path.write_text("\n".join(query_lines(cluster, scenario, f"{running.name}{run}", count)))
        return path

    static = None if scenario.fresh else qfile("all", 0, 0)
    if warm > 0:
        dnsperf(
            running.port,
            static or qfile("w", 2000, warm),
            qps=2000,
            seconds=warm,
            proto=scenario.proto,
            verbose=False,
        )
    hits0 = running.fastpath_hits()
    cpu0 = running.cpu_s()
    peak = dnsperf(
        running.port,
        static or qfile("max", 120_000, seconds),
        qps=MAX_QPS,
        seconds=seconds,
        proto=scenario.proto,
        verbose=False,
    )
    cpu = running.cpu_s() - cpu0
    hits1 = running.fastpath_hits()
    row.rss_mb = running.rss_mb()
    if peak.completed:
        row.qps = peak.qps
        row.us_per_query = cpu / peak.completed * 1e6
        row.lost_pct = 100.0 * peak.lost / max(1, peak.sent)
        row.rcodes = peak.rcodes
        if hits0 is not None and hits1 is not None:
            row.fastpath_pct = 100.0 * (hits1 - hits0) / peak.completed
    else:
        row.note = f"max run: {peak.sent} sent, none answered"
    queued0 = running.queued_s()
    fixed = dnsperf(
        running.port,
        static or qfile("fixed", FIXED_QPS, seconds),
        qps=FIXED_QPS,
        seconds=seconds,
        proto=scenario.proto,
        verbose=True,
    )
    row.queued_ms_per_s = (running.queued_s() - queued0) * 1000 / seconds
    row.p50_us = percentile(fixed.latencies_us, 0.50)
    row.p99_us = percentile(fixed.latencies_us, 0.99)
    row.fixed_lost_pct = 100.0 * fixed.lost / max(1, fixed.sent)
    return row


# -- the run ---------------------------------------------------------------------------------------


def clusterdns_has_reload(tree: Path | None) -> bool:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    out = subprocess.run(
        [sys.executable, "-m", "clusterdns", "-plugins"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree or ROOT,
        check=False,
    ).stdout
    return "reload" in out.split()


def run_cluster(
    cluster: Cluster,
    args: argparse.Namespace,
    work: Path,
    upstream: int,
    coredns: Path | None,
    reload: bool,
) -> list[Row]:
    rows: list[Row] = []
    say(f"== {cluster.title}")
    with api_double(work, cluster) as api:
        ctx = Context(work, cluster, api, upstream, args.tree, coredns, reload)
        for server in args.servers:
            if server == "coredns" and coredns is None:
                rows.extend(
                    Row(cluster.name, s.key, "coredns", note="not built")
                    for s in SCENARIOS
                    if s.key in args.scenarios
                )
                continue
            say(f"-- {LABELS[server]}: starting")
            t0 = time.monotonic()
            try:
                if server == "dnsmasq":
                    running = start_dnsmasq(ctx)
                elif server == "knot":
                    running = start_knot(ctx)
                else:
                    running = start_kubernetes_server(ctx, server)
            except RuntimeError as exc:
                say(f"   could not start: {exc}")
                rows.extend(
                    Row(cluster.name, s.key, server, note=f"did not start: {exc}")
                    for s in SCENARIOS
                    if s.key in args.scenarios
                )
                continue
            say(f"   ready in {time.monotonic() - t0:.1f} s, RSS {running.rss_mb():.1f} MiB")
            try:
                for scenario in SCENARIOS:
                    if scenario.key not in args.scenarios:
                        continue
                    if server == "knot" and scenario.key in AUTHORITATIVE_ONLY:
                        continue
                    row = measure(running, cluster, scenario, work, args.seconds, args.warmup)
                    rows.append(row)
                    fp = "" if row.fastpath_pct is None else f", fast path {row.fastpath_pct:.0f}%"
                    say(
                        f"   {scenario.key}. {scenario.title:<28} {row.qps:>9.0f} qps "
                        f"{row.us_per_query:>7.1f} µs/q  p50 {row.p50_us:>6.0f} µs  "
                        f"p99 {row.p99_us:>7.0f} µs{fp}"
                    )
            finally:
                running.stop()
    return rows


def environment(coredns: Path | None, tree: Path | None) -> dict[str, str]:
    def version(argv: list[str]) -> str:
        with contextlib.suppress(OSError):
            out = subprocess.run(argv, capture_output=True, text=True, check=False)
            text = (out.stdout or out.stderr).strip().splitlines()
            return text[0] if text else "?"
        return "?"

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = version(["git", "-C", str(tree or ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(tree or ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "clusterdns": f"{rev}{' (modified)' if dirty else ''}" + (f" from {tree}" if tree else ""),
        "coredns": version([str(coredns), "-version"]) if coredns else "not built",
        "dnsperf": version(["dnsperf", "-h"]).replace("Usage: ", "") and _dnsperf_version(),
        "dnsmasq": version(["dnsmasq", "--version"]),
        "knot": version(["knotd", "--version"]),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _dnsperf_version() -> str:
    out = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True, check=False)
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("Version"):
            return line.split()[-1]
    return "?"


# -- report ---------------------------------------------------------------------------------------


NA: Final = "n/a"


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return NA
    return f"{value:,.{digits}f}"


def pct(value: float) -> str:
    return NA if value != value else f"{value:.2f}%"


def ratio(a: float, b: float) -> float:
    return a / b if a == a and b == b and b > 0 else float("nan")


TARGETS: Final = {
    # scenario: (max µs ratio to CoreDNS, max µs ratio to the C floor, p99 limit µs)
    "1": (0.5, 1.5, 150.0),
    "2": (0.5, 1.5, 150.0),
    "3": (0.5, None, 150.0),
    "4": (0.5, 1.5, 150.0),
    "5": (0.5, 1.5, 150.0),
    "6": (1.0, None, None),
    "7": (0.5, None, None),
}


def report(rows: list[Row], env: dict[str, str], args: argparse.Namespace) -> str:
    by = {(r.cluster, r.scenario, r.server): r for r in rows}
    clusters = list(dict.fromkeys(r.cluster for r in rows))
    titles = {s.key: s.title for s in SCENARIOS}
    out = ["# clusterdns benchmark", ""]
    out.append(
        f"`{' '.join(['bench/run.py', *args.argv])}` — every server on core {SERVER_CPU}, "
        f"dnsperf, the upstream and the API double on core {LOADGEN_CPU}; "
        f"{args.seconds:g} s per run; loopback."
    )
    out.append("")
    out.extend(f"- {k}: {v}" for k, v in env.items())
    for cluster in clusters:
        out += ["", f"## {cluster} cluster", ""]
        out.append(
            "| scenario | server | max qps | µs/query at max | p50 µs @5k | p99 µs @5k "
            "| queued ms/s @5k | RSS MiB | fast path | lost @max | note |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s in SCENARIOS:
            for server in SERVERS:
                r = by.get((cluster, s.key, server))
                if r is None:
                    continue
                fp = "" if r.fastpath_pct is None else f"{r.fastpath_pct:.0f}%"
                out.append(
                    f"| {s.key}. {titles[s.key]} | {LABELS[server]} | {fmt(r.qps)} "
                    f"| {fmt(r.us_per_query, 1)} | {fmt(r.p50_us)} | {fmt(r.p99_us)} "
                    f"| {fmt(r.queued_ms_per_s, 1)} | {fmt(r.rss_mb, 1)} | {fp} "
                    f"| {pct(r.lost_pct)} | {r.note} |"
                )
        out += ["", f"### Ratios and targets ({cluster})", ""]
        out.append(
            "| scenario | clusterdns/CoreDNS µs | target | clusterdns/C floor µs | target "
            "| C floor | clusterdns p99 @5k | target | CoreDNS p99 | C floor p99 |"
        )
        out.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
        for s in SCENARIOS:
            c = by.get((cluster, s.key, "clusterdns"))
            if c is None:
                continue
            g = by.get((cluster, s.key, "coredns"))
            f = floor(by, cluster, s.key)
            to_go = ratio(c.us_per_query, g.us_per_query) if g else float("nan")
            to_c = ratio(c.us_per_query, f.us_per_query) if f else float("nan")
            t_go, t_c, t_p99 = TARGETS[s.key]
            out.append(
                f"| {s.key}. {titles[s.key]} | {_verdict(to_go, t_go, 2)} | ≤ {t_go:g} "
                f"| {_verdict(to_c, t_c, 2)} | {'≤ ' + format(t_c, 'g') if t_c else NA} "
                f"| {f.server if f else NA} "
                f"| {_verdict(c.p99_us, t_p99, 0)} | {'≤ ' + format(t_p99, 'g') if t_p99 else NA} "
                f"| {fmt(g.p99_us) if g else NA} | {fmt(f.p99_us) if f else NA} |"
            )
    out += ["", "Response codes at max load (sanity):", ""]
    for r in rows:
        if r.rcodes:
            out.append(f"- {r.cluster} {r.scenario} {LABELS[r.server]}: {r.rcodes}")
    return "\n".join(out) + "\n"


def floor(by: dict[tuple[str, str, str], Row], cluster: str, scenario: str) -> Row | None:
    """The C server with the lower µs per query for a scenario (the C floor)."""
    found = [
        r
        for name in FLOORS
        if (r := by.get((cluster, scenario, name))) is not None and r.us_per_query == r.us_per_query
    ]
    return min(found, key=lambda r: r.us_per_query) if found else None


def _verdict(value: float, limit: float | None, digits: int) -> str:
    if value != value:
        return NA
    text = fmt(value, digits)
    if limit is None:
        return text
    return f"{text} {'✓' if value <= limit else '✗'}"


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clusters = list(dict.fromkeys(r.cluster for r in rows))
    keys = [s.key for s in SCENARIOS if any(r.scenario == s.key for r in rows)]
    servers = [s for s in SERVERS if any(r.server == s and not r.note for r in rows)]
    fig, axes = plt.subplots(len(clusters), 2, figsize=(13, 3.6 * len(clusters)), squeeze=False)
    width = 0.8 / max(1, len(servers))
    colours = {
        "clusterdns": "#2a7ab0",
        "coredns": "#e07b39",
        "knot": "#4d4d4d",
        "dnsmasq": "#a8a8a8",
    }
    titles = {s.key: s.title for s in SCENARIOS}
    for row_index, cluster in enumerate(clusters):
        by = {(r.scenario, r.server): r for r in rows if r.cluster == cluster}
        for col, (metric, label) in enumerate(
            (("qps", "max qps (one server core)"), ("us_per_query", "server CPU µs per query"))
        ):
            ax = axes[row_index][col]
            for i, server in enumerate(servers):
                values = [
                    getattr(by[(k, server)], metric) if (k, server) in by else 0 for k in keys
                ]
                xs = [x + (i - (len(servers) - 1) / 2) * width for x in range(len(keys))]
                ax.bar(xs, values, width, label=LABELS[server], color=colours[server])
            ax.set_xticks(range(len(keys)))
            ax.set_xticklabels([f"{k}. {titles[k]}" for k in keys], rotation=25, ha="right")
            ax.set_title(f"{cluster} cluster: {label}", fontsize=10)
            if metric == "us_per_query":
                ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark clusterdns against CoreDNS and dnsmasq on loopback."
    )
    parser.add_argument("--quick", action="store_true", help="reference cluster, 2 s runs")
    parser.add_argument("--seconds", type=float, default=None, help="length of each run (5)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up per scenario (1)")
    parser.add_argument("--clusters", default=None, help="reference,synthetic")
    parser.add_argument("--scenarios", default="1,2,3,4,5,6,7", help="e.g. 1,4,7")
    parser.add_argument("--servers", default=",".join(SERVERS), help=",".join(SERVERS))
    parser.add_argument("--tree", type=Path, default=None, help="run clusterdns from this tree")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--publish", action="store_true", help="also write docs/bench.png")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get or pip")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    clusters = (args.clusters or ("reference" if args.quick else "reference,synthetic")).split(",")
    args.scenarios = set(args.scenarios.split(","))
    args.servers = [s for s in args.servers.split(",") if s]
    if os.cpu_count() is None or (os.cpu_count() or 1) < 2:
        say("warning: fewer than 2 CPUs; load generator and server share a core")
    ensure_tools(not args.no_install)
    coredns = coredns_binary()
    if coredns is None:
        say("CoreDNS: not built (run scripts/test-realcluster once)")
    reload = clusterdns_has_reload(args.tree)
    if not reload:
        say("clusterdns has no `reload` plugin yet: the line is left out for every server")
    env = environment(coredns, args.tree)
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="clusterdns-bench-") as tmp:
        work = Path(tmp)
        extras = extras_yaml(work / "extras.yaml")
        upstream, upstream_port = start_upstream(work)
        try:
            for name in clusters:
                cluster = (
                    reference_cluster(extras) if name == "reference" else synthetic_cluster(extras)
                )
                rows += run_cluster(cluster, args, work, upstream_port, coredns, reload)
        finally:
            upstream.terminate()
            upstream.wait(10)
            logs = args.out / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, logs / log.name)
    env["duration"] = f"{time.monotonic() - started:.0f} s"
    env["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    text = report(rows, env, args)
    (args.out / "latest.md").write_text(text)
    (args.out / "latest.json").write_text(
        json.dumps({"environment": env, "rows": [asdict(r) for r in rows]}, indent=1)
    )
    chart(rows, args.out / "latest.png")
    if args.publish:
        shutil.copy(args.out / "latest.png", ROOT / "docs" / "bench.png")
    print(text)
    say(f"written: {args.out / 'latest.md'}, {args.out / 'latest.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
