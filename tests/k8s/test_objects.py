"""The converters of objects.py on realistic API JSON (as `kubectl get -o json` prints it)."""

from __future__ import annotations

from typing import Any

import pytest

from clusterdns.k8s.objects import (
    NO_PORT,
    EndpointAddress,
    EndpointSlice,
    Kind,
    Namespace,
    Pod,
    Port,
    Service,
    from_api,
)

JSON = dict[str, Any]

SLICE: JSON = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {
        "name": "web-abc12",
        "namespace": "apps",
        "labels": {
            "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        },
        "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-05-01T10:00:00Z"},
        "resourceVersion": "4242",
    },
    "addressType": "IPv4",
    "endpoints": [
        {
            "addresses": ["10.244.1.5"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "hostname": "web-0",
            "nodeName": "node-1",
            "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "apps"},
        },
        {
            # ready absent: counts as ready
            "addresses": ["10.244.2.6"],
            "conditions": {},
            "nodeName": "node-2",
            "targetRef": {"kind": "Pod", "name": "p" * 64, "namespace": "apps"},
        },
        {
            # not ready (terminating): skipped entirely
            "addresses": ["10.244.3.7"],
            "conditions": {"ready": False, "serving": True, "terminating": True},
            "targetRef": {"kind": "Pod", "name": "web-2", "namespace": "apps"},
        },
    ],
    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
}


def test_endpointslice_ready_rules_and_target_names() -> None:
    sl = from_api(Kind.ENDPOINTSLICE, SLICE)
    assert isinstance(sl, EndpointSlice)
    assert sl.key == ("apps", "web-abc12")
    assert sl.service_key == ("apps", "web")
    assert sl.ports == (Port("http", "TCP", 8080),)
    assert sl.addresses == (
        EndpointAddress("10.244.1.5", "web-0", "node-1", "web-0"),
        EndpointAddress("10.244.2.6", "", "node-2", ""),  # a 64-character pod name is dropped
    )
    assert sl.trigger_time == 1714557600.0


def test_endpointslice_ports_absent_and_ipv6_canonical() -> None:
    doc: JSON = {
        "metadata": {
            "name": "v6",
            "namespace": "apps",
            "labels": {"kubernetes.io/service-name": "dual"},
        },
        "addressType": "IPv6",
        "endpoints": [{"addresses": ["fd00:0:0:0:0:0:0:a"]}],
        "ports": [{}],
    }
    sl = from_api(Kind.ENDPOINTSLICE, doc)
    assert isinstance(sl, EndpointSlice)
    assert sl.addresses == (EndpointAddress("fd00::a"),)
    assert sl.ports == (Port("", "", -1),)
    del doc["ports"]
    sl = from_api(Kind.ENDPOINTSLICE, doc)
    assert isinstance(sl, EndpointSlice)
    assert sl.ports == NO_PORT


def test_endpointslice_without_service_label_is_ignored() -> None:
    doc: JSON = {"metadata": {"name": "orphan", "namespace": "apps"}, "endpoints": []}
    assert from_api(Kind.ENDPOINTSLICE, doc) is None


def test_service_clusterip_dual_stack() -> None:
    doc: JSON = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dual", "namespace": "apps", "resourceVersion": "7"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.3.3",
            "clusterIPs": ["10.96.3.3", "fd00:10:96:0:0:0:0:3"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
        "status": {"loadBalancer": {}},
    }
    svc = from_api(Kind.SERVICE, doc)
    assert isinstance(svc, Service)
    assert svc.cluster_ips == ("10.96.3.3", "fd00:10:96::3")
    assert svc.ports == (Port("http", "TCP", 80),)
    assert not svc.headless and not svc.is_external_name


def test_service_headless_without_ports() -> None:
    doc: JSON = {
        "metadata": {"name": "db", "namespace": "apps"},
        "spec": {"clusterIP": "None", "clusterIPs": ["None"], "type": "ClusterIP"},
    }
    svc = from_api(Kind.SERVICE, doc)
    assert isinstance(svc, Service)
    assert svc.headless
    assert svc.ports == NO_PORT


def test_service_external_name_and_load_balancer() -> None:
    ext = from_api(
        Kind.SERVICE,
        {
            "metadata": {"name": "alias", "namespace": "apps"},
            "spec": {"type": "ExternalName", "externalName": "web.apps.svc.cluster.local"},
        },
    )
    assert isinstance(ext, Service)
    assert ext.is_external_name and ext.external_name == "web.apps.svc.cluster.local"
    assert ext.cluster_ips == ()
    lb = from_api(
        Kind.SERVICE,
        {
            "metadata": {"name": "lb", "namespace": "apps"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9", "externalIPs": ["1.2.3.4"]},
            "status": {
                "loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}]}
            },
        },
    )
    assert isinstance(lb, Service)
    assert lb.external_ips == ("1.2.3.4", "5.6.7.8", "lb.example")


def test_namespace() -> None:
    ns = from_api(Kind.NAMESPACE, {"kind": "Namespace", "metadata": {"name": "apps"}})
    assert ns == Namespace("apps")
    assert ns is not None and ns.key == ("", "apps")


@pytest.mark.parametrize(
    ("phase", "ip", "expected"),
    [
        ("Running", "10.244.2.5", Pod("apps", "web-0", "10.244.2.5")),
        ("Pending", None, None),
        ("Succeeded", "10.244.2.5", None),
        ("Failed", "10.244.2.5", None),
        ("Unknown", "10.244.2.5", None),
    ],
)
def test_pod_phases(phase: str, ip: str | None, expected: Pod | None) -> None:
    status: JSON = {"phase": phase, "podIPs": [{"ip": "10.244.2.5"}, {"ip": "fd00::5"}]}
    if ip:
        status["podIP"] = ip
    doc: JSON = {"metadata": {"name": "web-0", "namespace": "apps"}, "status": status}
    assert from_api(Kind.POD, doc) == expected


def test_pod_terminating_is_marked() -> None:
    doc: JSON = {
        "metadata": {
            "name": "web-0",
            "namespace": "apps",
            "deletionTimestamp": "2024-05-01T10:00:00Z",
        },
        "status": {"phase": "Running", "podIP": "10.244.2.5"},
    }
    pod = from_api(Kind.POD, doc)
    assert isinstance(pod, Pod) and pod.deleting
