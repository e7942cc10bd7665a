"""manifests/clusterdns.yaml: valid against the Kubernetes 1.35 API schemas (offline, strict:
unknown fields are errors), and consistent with the deployment contract (spec §1) and with
itself — selectors match labels, probes and ports match the Corefile, the ConfigMap key is the
file the arguments name."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.manifests.objects import (
    DEPLOY,
    Obj,
    by_kind,
    container,
    corefile,
    documents,
    project_version,
)

K8S_VERSION = "1.35"
KINDS = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
]
DNS_LABELS = {"k8s-app": "kube-dns"}


def validate(obj: Obj) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_seven_objects_in_apply_order() -> None:
    assert [doc["kind"] for doc in documents(DEPLOY)] == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_valid_against_the_kubernetes_schema(kind: str) -> None:
    validate(by_kind(kind))


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", ("spec", "template", "spec", "containers", 0, "port"), 53),
        ("Deployment", ("spec", "replicas"), "two"),
        ("Service", ("spec", "ports", 0, "protocol"), 17),
        ("ClusterRole", ("rules", 0, "verb"), ["list"]),
    ],
)
def test_the_validation_catches_mistakes(kind: str, path: tuple[Any, ...], value: Any) -> None:
    obj = copy.deepcopy(by_kind(kind))
    node: Any = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(obj)


def test_kubeadm_names_and_namespace() -> None:
    for kind, name in [
        ("ServiceAccount", "coredns"),
        ("ClusterRole", "system:coredns"),
        ("ClusterRoleBinding", "system:coredns"),
        ("ConfigMap", "coredns"),
        ("Deployment", "coredns"),
        ("Service", "kube-dns"),
        ("PodDisruptionBudget", "coredns"),
    ]:
        meta = by_kind(kind)["metadata"]
        assert meta["name"] == name
        if kind not in ("ClusterRole", "ClusterRoleBinding"):
            assert meta["namespace"] == "kube-system"


def test_rbac_is_list_and_watch_on_what_the_default_corefile_reads() -> None:
    rules = by_kind("ClusterRole")["rules"]
    granted = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    want = {
        (group, resource, verb)
        for group, resource in [
            ("", "services"),
            ("", "namespaces"),
            ("discovery.k8s.io", "endpointslices"),
        ]
        for verb in ("list", "watch")
    }
    assert granted == want
    binding = by_kind("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:coredns",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}
    ]
    spec = by_kind("Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "coredns"


def test_configmap_holds_the_kubeadm_corefile() -> None:
    text = corefile()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == ".:53 {" and lines[-1] == "}"
    assert lines[1:-1] == [
        "errors",
        "health {",
        "lameduck 5s",
        "}",
        "ready",
        "kubernetes cluster.local in-addr.arpa ip6.arpa {",
        "pods insecure",
        "fallthrough in-addr.arpa ip6.arpa",
        "ttl 30",
        "}",
        "prometheus :9153",
        "forward . /etc/resolv.conf {",
        "max_concurrent 1000",
        "}",
        "cache 30 {",
        "disable success cluster.local",
        "disable denial cluster.local",
        "}",
        "loop",
        "reload",
        "loadbalance",
    ]


def test_deployment_contract() -> None:
    deploy = by_kind("Deployment")
    spec = deploy["spec"]
    pod = spec["template"]["spec"]
    c = container()
    assert deploy["metadata"]["labels"] == DNS_LABELS
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert spec["selector"] == {"matchLabels": DNS_LABELS}
    assert spec["template"]["metadata"]["labels"] == DNS_LABELS
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["dnsPolicy"] == "Default"
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in pod["tolerations"]
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert c["args"] == ["-conf", "/etc/coredns/Corefile"]
    assert c["image"] == f"clusterdns:{project_version()}"
    assert c["resources"] == {
        "limits": {"memory": "170Mi"},
        "requests": {"cpu": "100m", "memory": "70Mi"},
    }
    ports = {(p["name"], p["containerPort"], p["protocol"]) for p in c["ports"]}
    assert ports == {
        ("dns", 53, "UDP"),
        ("dns-tcp", 53, "TCP"),
        ("metrics", 9153, "TCP"),
        ("liveness-probe", 8080, "TCP"),
        ("readiness-probe", 8181, "TCP"),
    }
    assert c["livenessProbe"] == {
        "httpGet": {"path": "/health", "port": "liveness-probe", "scheme": "HTTP"},
        "initialDelaySeconds": 60,
        "timeoutSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": 5,
    }
    assert c["readinessProbe"]["httpGet"] == {
        "path": "/ready",
        "port": "readiness-probe",
        "scheme": "HTTP",
    }


def test_spread_over_nodes_and_zones() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term[0]["podAffinityTerm"]["labelSelector"]["matchExpressions"] == [
        {"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}
    ]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in spread.values():
        assert constraint["labelSelector"] == {"matchLabels": DNS_LABELS}
        assert constraint["maxSkew"] == 1
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


def test_non_root_read_only_and_only_net_bind_service() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert isinstance(ctx["runAsUser"], int) and ctx["runAsUser"] > 0
    assert ctx["runAsGroup"] == ctx["runAsUser"]
    assert ctx["sysctls"] == [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]
    assert container()["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
    }


def test_config_volume_is_the_file_the_arguments_name() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    c = container()
    (mount,) = c["volumeMounts"]
    (volume,) = pod["volumes"]
    assert mount == {"name": volume["name"], "mountPath": "/etc/coredns", "readOnly": True}
    assert volume["configMap"] == {
        "name": by_kind("ConfigMap")["metadata"]["name"],
        "items": [{"key": "Corefile", "path": "Corefile"}],
    }
    assert c["args"][1] == f"{mount['mountPath']}/{volume['configMap']['items'][0]['path']}"
    assert "Corefile" in by_kind("ConfigMap")["data"]


def group(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.MULTILINE)
    assert m is not None, pattern
    return m.group(1)


def test_probes_and_ports_match_the_corefile() -> None:
    text = corefile()
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert group(r"^\.:(\d+) \{$", text) == str(ports["dns"])
    assert group(r"^\s*prometheus :(\d+)$", text) == str(ports["metrics"])
    # `health` and `ready` without an address listen on their defaults, :8080 and :8181.
    assert re.search(r"(?m)^\s*health \{$", text) and ports["liveness-probe"] == 8080
    assert re.search(r"(?m)^\s*ready$", text) and ports["readiness-probe"] == 8181


def test_service_contract() -> None:
    svc = by_kind("Service")
    assert svc["metadata"]["labels"] == {
        "k8s-app": "kube-dns",
        "kubernetes.io/cluster-service": "true",
        "kubernetes.io/name": "CoreDNS",
    }
    assert svc["metadata"]["annotations"] == {
        "prometheus.io/port": "9153",
        "prometheus.io/scrape": "true",
    }
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["clusterIP"] == "10.96.0.10"
    assert spec["selector"] == DNS_LABELS
    assert [(p["name"], p["port"], p["protocol"], p["targetPort"]) for p in spec["ports"]] == [
        ("dns", 53, "UDP", 53),
        ("dns-tcp", 53, "TCP", 53),
        ("metrics", 9153, "TCP", 9153),
    ]
    container_ports = {(p["containerPort"], p["protocol"]) for p in container()["ports"]}
    for port in spec["ports"]:
        assert (port["targetPort"], port["protocol"]) in container_ports


def test_disruption_budget() -> None:
    pdb = by_kind("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": DNS_LABELS}}
