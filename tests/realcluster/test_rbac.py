"""The RBAC clusterdns ships is sufficient and minimal, proven against the real authorizer; the
shipped manifests validate against the real API (`kubectl apply --dry-run=server`).

The ClusterRole is read from manifests/ (the one named `system:coredns`); until that folder has
it, FIXTURE_RULES below stand in (list/watch on services, namespaces and endpointslices).
"""

from __future__ import annotations

import copy
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from kubernetes import client

from tests.ports import free_udp_tcp_port
from tests.realcluster.controlplane import ROOT, ControlPlane, binary
from tests.realcluster.objects import Fixture
from tests.realcluster.servers import (
    DnsServer,
    Upstream,
    dig,
    http_get,
    kubeadm_corefile,
    start_dns,
    stop_all,
)

pytestmark = pytest.mark.timeout(300)

MANIFESTS: Final = ROOT / "manifests"
ROLE: Final = "system:coredns"
FIXTURE_RULES: Final[list[dict[str, Any]]] = [
    {"apiGroups": [""], "resources": ["services", "namespaces"], "verbs": ["list", "watch"]},
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    },
]
NOT_READY_HOLD_S: Final = 3.0
SETTLE_S: Final = 8.0


def manifest_files() -> list[Path]:
    if not MANIFESTS.is_dir():
        return []
    return sorted(p for p in MANIFESTS.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def shipped_rules() -> tuple[list[dict[str, Any]], str]:
    """The rules of ClusterRole system:coredns in manifests/, else the stand-in rules."""
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if (
                isinstance(doc, dict)
                and doc.get("kind") == "ClusterRole"
                and doc.get("metadata", {}).get("name") == ROLE
            ):
                return list(doc.get("rules") or []), str(path.relative_to(ROOT))
    return copy.deepcopy(FIXTURE_RULES), "FIXTURE_RULES (manifests/ has no ClusterRole yet)"


def without(rules: list[dict[str, Any]], resource: str | None, verb: str | None) -> list[Any]:
    """The rules minus one resource (everywhere it appears) or minus one verb."""
    out = []
    for rule in copy.deepcopy(rules):
        if resource is not None:
            rule["resources"] = [r for r in rule.get("resources", []) if r != resource]
        if verb is not None:
            rule["verbs"] = [v for v in rule.get("verbs", []) if v != verb]
        if rule.get("resources") and rule.get("verbs"):
            out.append(rule)
    return out


def resources() -> list[str]:
    return sorted({r for rule in shipped_rules()[0] for r in rule.get("resources", [])})


def verbs() -> list[str]:
    return sorted({v for rule in shipped_rules()[0] for v in rule.get("verbs", [])})


def token_kubeconfig(kube: Any, cp: ControlPlane, name: str, rules: list[Any], out: Path) -> Path:
    """A ServiceAccount bound to a ClusterRole with `rules`; a kubeconfig with its token."""
    core: Any = client.CoreV1Api(kube)
    rbac: Any = client.RbacAuthorizationV1Api(kube)
    sa, ns = f"coredns-{name}", "kube-system"
    role = f"realcluster:{sa}"
    core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": rules})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        }
    )
    req = core.create_namespaced_service_account_token(
        sa, ns, {"spec": {"expirationSeconds": 3600}}
    )
    return cp.kubeconfig_for_token(req.status.token, out / f"{sa}.kubeconfig")


@pytest.fixture
def run_server(control_plane: ControlPlane, upstream: Upstream, tmp_path: Path) -> Iterator[Any]:
    """run(name, kubeconfig): start clusterdns, or CoreDNS for a name starting with "coredns",
    on the kubeadm Corefile with that kubeconfig."""
    started: list[DnsServer] = []

    def run(name: str, kubeconfig: Path) -> DnsServer:
        port, ready = free_udp_tcp_port(), free_udp_tcp_port()
        corefile = kubeadm_corefile(
            port=port,
            ready_port=ready,
            health_port=free_udp_tcp_port(),
            metrics_port=free_udp_tcp_port(),
            kubeconfig=kubeconfig,
            upstream=upstream.port,
            cache="",
        )
        server = start_dns(name, tmp_path, corefile, port, ready)
        started.append(server)
        return server

    yield run
    stop_all(started)


def settled_ready(servers: list[DnsServer], started: float) -> dict[str, set[int]]:
    """Each server's /ready statuses seen for NOT_READY_HOLD_S, from SETTLE_S after start on
    (past CoreDNS's own wait for the API before it serves)."""
    time.sleep(max(0.0, started + SETTLE_S - time.monotonic()))
    codes: dict[str, set[int]] = {s.name: set() for s in servers}
    end = time.monotonic() + NOT_READY_HOLD_S
    while time.monotonic() < end:
        for s in servers:
            codes[s.name].add(http_get(s.ready_url)[0])
        time.sleep(0.3)
    for s in servers:
        assert s.process.alive(), f"{s.name} exited:\n{s.log()[-2000:]}"
    return codes


def test_shipped_rbac_is_sufficient(
    kube: Any,
    control_plane: ControlPlane,
    fixture_cluster: Fixture,
    run_server: Any,
    tmp_path: Path,
) -> None:
    rules, source = shipped_rules()
    print(f"ClusterRole rules from {source}: {rules}")
    kubeconfig = token_kubeconfig(kube, control_plane, "full", rules, tmp_path)
    for name in ("clusterdns", "coredns"):
        server = run_server(name, kubeconfig)
        server.wait_ready()
        assert dig(server, "+short", "api.prod.svc.cluster.local").split() == ["10.96.5.5"]
        assert sorted(dig(server, "+short", "web.prod.svc.cluster.local").split()) == [
            "10.244.1.10",
            "10.244.2.11",
            "10.244.3.12",
        ]
        assert "status: NXDOMAIN" in dig(server, "api.nosuchns.svc.cluster.local")
        assert "status: NOERROR" in dig(server, "empty-ns.svc.cluster.local")
        assert "forbidden" not in server.log().lower(), server.log()


@pytest.mark.parametrize("resource", resources(), ids=[f"no-{r}" for r in resources()])
def test_each_resource_is_needed(
    resource: str,
    kube: Any,
    control_plane: ControlPlane,
    fixture_cluster: Fixture,
    run_server: Any,
    tmp_path: Path,
) -> None:
    """Without one resource of the ClusterRole, clusterdns logs it as forbidden and stays not
    ready -- and so does CoreDNS with the same token (the role holds nothing CoreDNS can do
    without either)."""
    rules, source = shipped_rules()
    cut = without(rules, resource, None)
    kubeconfig = token_kubeconfig(kube, control_plane, f"no-{resource}", cut, tmp_path)
    t0 = time.monotonic()
    servers = [run_server(name, kubeconfig) for name in ("clusterdns", "coredns")]
    for server in servers:
        line = server.wait_log(rf"(?i)forbidden.*{resource}|{resource}.*forbidden")
        print(f"{server.name} without {resource} (rules from {source}): {line}")
    for name, codes in settled_ready(servers, t0).items():
        assert codes == {503}, f"{name}: /ready answered {codes} without {resource}"


@pytest.mark.parametrize("verb", verbs(), ids=[f"no-{v}" for v in verbs()])
def test_each_verb_is_logged_and_ready_like_coredns(
    verb: str,
    kube: Any,
    control_plane: ControlPlane,
    fixture_cluster: Fixture,
    run_server: Any,
    tmp_path: Path,
) -> None:
    """Without one verb everywhere, clusterdns names the forbidden verb in its log, and its
    /ready agrees with CoreDNS's under the same token (CoreDNS 1.14.7 lists through a watch
    with initial events, and falls back to a list when a watch is refused)."""
    rules, _ = shipped_rules()
    kubeconfig = token_kubeconfig(
        kube, control_plane, f"no-{verb}", without(rules, None, verb), tmp_path
    )
    t0 = time.monotonic()
    clusterdns, coredns = (run_server(name, kubeconfig) for name in ("clusterdns", "coredns"))
    line = clusterdns.wait_log(r"(?i)forbidden")
    assert re.search(rf"(?i)\b{verb}\b", line), line
    seen = settled_ready([clusterdns, coredns], t0)
    for server in (clusterdns, coredns):
        forbidden = [x for x in server.log().splitlines() if "forbidden" in x.lower()]
        print(f"{server.name} without {verb}: /ready {seen[server.name]}")
        print(f"  {len(forbidden)} log lines name a forbidden request, e.g. {forbidden[:1]}")
    if verb == "list":
        # docs/deviations.md D36: CoreDNS 1.14.7 takes its first snapshot through a watch with
        # initial events and becomes ready without `list`; clusterdns lists first, so without
        # `list` it names the missing permission and stays not ready.
        assert seen["clusterdns"] == {503} and seen["coredns"] == {200}, seen
        return
    assert seen["clusterdns"] == seen["coredns"], (
        f"without {verb!r}: clusterdns /ready {seen['clusterdns']}, CoreDNS {seen['coredns']}"
    )


def test_manifests_validate_against_the_real_api(control_plane: ControlPlane) -> None:
    files = manifest_files()
    if not files:
        pytest.skip(f"{MANIFESTS} has no manifests yet: nothing for kubectl apply --dry-run=server")
    res = subprocess.run(
        [
            binary("kubectl"),
            "--kubeconfig",
            str(control_plane.admin_kubeconfig),
            "apply",
            "--dry-run=server",
            "-f",
            str(MANIFESTS),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, f"kubectl apply --dry-run=server failed:\n{res.stdout}{res.stderr}"
    print(res.stdout)
