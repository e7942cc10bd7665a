"""The fixture cluster, created through the official Python client against the real apiserver.

It is the spec's reference cluster (§0.4, same names and addresses: the ClusterIPs are asked
for explicitly, EndpointSlices of selector-less Services are written by hand), plus objects that
exercise what §0.4 leaves out: an unnamed port, a target port that differs from the service
port, an ExternalName whose target the upstream does not know, a headless Service with 40
endpoints (truncated replies), and a namespace `ctl` whose Services select Pods, so the
apiserver allocates the ClusterIPs and the endpointslice controller writes the EndpointSlices
from Pods whose status the test patches (Ready, podIP).

`Fixture` records every object's names and addresses, from which the differential corpus is
generated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException

NODE: Final = "realcluster-node"
SLICE_LABEL: Final = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    protocol: str = "TCP"
    target: int | None = None


@dataclass(frozen=True)
class Endpoint:
    ip: str
    ready: bool = True
    hostname: str | None = None
    pod: str | None = None


@dataclass
class Service:
    ns: str
    name: str
    kind: str  # "ClusterIP", "Headless", "ExternalName"
    ports: list[Port] = field(default_factory=list)
    cluster_ips: list[str] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    external_name: str | None = None
    selector: dict[str, str] | None = None


@dataclass
class Pod:
    ns: str
    name: str
    ip: str
    ready: bool = True
    hostname: str | None = None
    subdomain: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Fixture:
    """What was created: the corpus is generated from it."""

    namespaces: list[str]
    services: list[Service]
    pods: list[Pod]


def reference_services() -> list[Service]:
    """§0.4 (default/kubernetes is the apiserver's own) plus the additions described above."""
    http = Port("http", 80)
    return [
        Service(
            "kube-system",
            "kube-dns",
            "ClusterIP",
            [Port("dns", 53, "UDP"), Port("dns-tcp", 53), Port("metrics", 9153)],
            ["10.96.0.10"],
            [Endpoint("10.244.0.2"), Endpoint("10.244.0.3")],
        ),
        Service(
            "prod",
            "api",
            "ClusterIP",
            [http, Port("grpc", 9090)],
            ["10.96.5.5", "fd00:10:96::5"],
            [Endpoint("10.244.1.20"), Endpoint("10.244.2.21", ready=False)],
        ),
        Service("prod", "empty", "ClusterIP", [http], ["10.96.7.7"]),
        Service(
            "prod",
            "web",
            "Headless",
            [http],
            [],
            [
                Endpoint("10.244.1.10", hostname="web-0"),
                Endpoint("10.244.2.11", hostname="web-1"),
                Endpoint("10.244.3.12", pod="web-7f9c-abcde"),
                Endpoint("fd00:10:244::c"),
            ],
        ),
        Service("prod", "lonely", "Headless", [http], [], [Endpoint("10.244.3.99", ready=False)]),
        Service("prod", "bare", "Headless", [], [], [Endpoint("10.244.4.40")]),
        Service("prod", "db", "ExternalName", external_name="db.example.com"),
        Service("prod", "alias", "ExternalName", external_name="api.prod.svc.cluster.local"),
        Service("prod", "ipname", "ExternalName", external_name="192.0.2.10"),
        # Beyond §0.4.
        Service(
            "prod",
            "single",
            "ClusterIP",
            [Port("", 8080, target=18080)],
            ["10.96.8.8"],
            [Endpoint("10.244.6.1")],
        ),
        Service(
            "prod",
            "hl-unnamed",
            "Headless",
            [Port("", 5432)],
            [],
            [Endpoint("10.244.6.2", hostname="pg-0"), Endpoint("10.244.6.3")],
        ),
        Service("prod", "gone", "ExternalName", external_name="nx.example.com"),
        # 40 endpoints: too many for 512 bytes (truncation over UDP without EDNS).
        Service(
            "prod",
            "many",
            "Headless",
            [Port("http", 80)],
            [],
            [Endpoint(f"10.244.7.{i}") for i in range(1, 41)],
        ),
        Service(
            "ctl",
            "app",
            "ClusterIP",
            [Port("http", 80, target=8080), Port("metrics", 9100)],
            selector={"app": "app"},
        ),
        Service(
            "ctl", "app-hl", "Headless", [Port("http", 80, target=8080)], selector={"app": "app"}
        ),
    ]


def reference_pods() -> list[Pod]:
    sel = {"app": "app"}
    return [
        Pod("prod", "client", "10.244.1.30"),
        Pod("ctl", "app-0", "10.244.5.10", hostname="app-0", subdomain="app-hl", labels=sel),
        Pod("ctl", "app-1", "10.244.5.11", hostname="app-1", subdomain="app-hl", labels=sel),
        Pod("ctl", "app-2", "10.244.5.12", ready=False, labels=sel),
    ]


def _ignore_exists(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 409:
            raise
        return None


def _service_body(s: Service) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if s.kind == "ExternalName":
        spec = {"type": "ExternalName", "externalName": s.external_name}
    else:
        if s.ports:
            spec["ports"] = [
                {"port": p.port, "protocol": p.protocol, "targetPort": p.target or p.port}
                | ({"name": p.name} if p.name else {})
                for p in s.ports
            ]
        if s.kind == "Headless":
            spec["clusterIP"] = "None"
        elif s.cluster_ips:
            spec["clusterIPs"] = s.cluster_ips
            spec["clusterIP"] = s.cluster_ips[0]
            if len(s.cluster_ips) > 1:
                spec["ipFamilyPolicy"] = "RequireDualStack"
        if s.selector:
            spec["selector"] = s.selector
    return {"metadata": {"name": s.name, "namespace": s.ns}, "spec": spec}


def _slices(s: Service) -> list[dict[str, Any]]:
    out = []
    for family in ("IPv4", "IPv6"):
        eps = [e for e in s.endpoints if (":" in e.ip) == (family == "IPv6")]
        if not eps:
            continue
        body: dict[str, Any] = {
            "metadata": {
                "name": f"{s.name}-{family.lower()}",
                "namespace": s.ns,
                "labels": {SLICE_LABEL: s.name},
            },
            "addressType": family,
            "endpoints": [
                {"addresses": [e.ip], "conditions": {"ready": e.ready}}
                | ({"hostname": e.hostname} if e.hostname else {})
                | (
                    {"targetRef": {"kind": "Pod", "namespace": s.ns, "name": e.pod}}
                    if e.pod
                    else {}
                )
                for e in eps
            ],
        }
        if s.ports:
            body["ports"] = [
                {"port": p.target or p.port, "protocol": p.protocol}
                | ({"name": p.name} if p.name else {"name": ""})
                for p in s.ports
            ]
        out.append(body)
    return out


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    """Poll check() until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


def create_fixture(api: client.ApiClient) -> Fixture:
    """Create every object (idempotent) and wait until the controller has written the slices."""
    # The client's typed signatures want model objects; it accepts plain dicts just as well.
    core: Any = client.CoreV1Api(api)
    disc: Any = client.DiscoveryV1Api(api)
    namespaces = ["prod", "empty-ns", "ctl"]
    for ns in namespaces:
        _ignore_exists(core.create_namespace, {"metadata": {"name": ns}})
    _ignore_exists(core.create_node, {"metadata": {"name": NODE}})
    services = reference_services()
    for s in services:
        created = _ignore_exists(core.create_namespaced_service, s.ns, _service_body(s))
        if created is None:
            created = core.read_namespaced_service(s.name, s.ns)
        if s.kind != "ExternalName" and s.kind != "Headless":
            s.cluster_ips = list(created.spec.cluster_ips)
        for body in _slices(s):
            _ignore_exists(disc.create_namespaced_endpoint_slice, s.ns, body)
    # default/kubernetes is the apiserver's own (no endpoints: --endpoint-reconciler-type=none).
    k = core.read_namespaced_service("kubernetes", "default")
    services.insert(
        0,
        Service(
            "default",
            "kubernetes",
            "ClusterIP",
            [Port(p.name or "", p.port, p.protocol) for p in k.spec.ports],
            list(k.spec.cluster_ips),
        ),
    )
    pods = reference_pods()
    for ns in {p.ns for p in pods}:
        # The ServiceAccount admission plugin refuses Pods until the controller made `default`.
        wait_for(
            f"ServiceAccount {ns}/default",
            lambda ns=ns: _exists(core.read_namespaced_service_account, "default", ns),
        )
    for p in pods:
        spec: dict[str, Any] = {
            "nodeName": NODE,
            "containers": [{"name": "c", "image": "registry.invalid/none:0"}],
            "automountServiceAccountToken": False,
        }
        if p.hostname:
            spec["hostname"] = p.hostname
        if p.subdomain:
            spec["subdomain"] = p.subdomain
        meta = {"name": p.name, "namespace": p.ns, "labels": p.labels}
        _ignore_exists(core.create_namespaced_pod, p.ns, {"metadata": meta, "spec": spec})
        core.patch_namespaced_pod_status(
            p.name,
            p.ns,
            {
                "status": {
                    "phase": "Running",
                    "podIP": p.ip,
                    "podIPs": [{"ip": p.ip}],
                    "conditions": [{"type": "Ready", "status": "True" if p.ready else "False"}],
                }
            },
        )
    # The selector Services: their endpoints are what the controller wrote from the Pods.
    for s in services:
        if not s.selector:
            continue
        want = {p.ip for p in pods if p.ns == s.ns and p.labels.items() >= s.selector.items()}
        s.endpoints = wait_for(
            f"EndpointSlices of {s.ns}/{s.name} listing {sorted(want)}",
            lambda s=s, want=want: _controller_endpoints(disc, s, want),
        )
    return Fixture(namespaces=["default", "kube-system", *namespaces], services=services, pods=pods)


def _exists(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _controller_endpoints(disc: Any, s: Service, want: set[str]) -> list[Endpoint] | None:
    slices = disc.list_namespaced_endpoint_slice(s.ns, label_selector=f"{SLICE_LABEL}={s.name}")
    eps: list[Endpoint] = []
    for sl in slices.items:
        for e in sl.endpoints or []:
            ready = bool(e.conditions and e.conditions.ready)
            pod = e.target_ref.name if e.target_ref else None
            eps.extend(Endpoint(ip, ready, e.hostname, pod) for ip in e.addresses)
    return eps if {e.ip for e in eps} == want else None
