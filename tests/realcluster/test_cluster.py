"""clusterdns against the real apiserver and controller-manager, checked with `dig`."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.ports import free_udp_tcp_port
from tests.realcluster.controlplane import ControlPlane
from tests.realcluster.objects import Fixture
from tests.realcluster.servers import (
    DnsServer,
    Upstream,
    dig,
    kubeadm_corefile,
    start_dns,
)

pytestmark = pytest.mark.timeout(300)
Z = "cluster.local"


@pytest.fixture(scope="module")
def clusterdns(
    control_plane: ControlPlane,
    fixture_cluster: Fixture,
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DnsServer]:
    port, ready = free_udp_tcp_port(), free_udp_tcp_port()
    corefile = kubeadm_corefile(
        port=port,
        ready_port=ready,
        health_port=free_udp_tcp_port(),
        metrics_port=free_udp_tcp_port(),
        kubeconfig=control_plane.admin_kubeconfig,
        upstream=upstream.port,
        cache="",
    )
    server = start_dns("clusterdns", tmp_path_factory.mktemp("dig"), corefile, port, ready)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def short(server: DnsServer, *args: str) -> list[str]:
    return sorted(dig(server, "+short", *args).split("\n")[:-1])


def status(server: DnsServer, *args: str) -> str:
    for line in dig(server, *args).splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    return "no reply"


def eventually(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_reference_answers(clusterdns: DnsServer) -> None:
    assert short(clusterdns, f"kubernetes.default.svc.{Z}") == ["10.96.0.1"]
    assert short(clusterdns, f"api.prod.svc.{Z}", "AAAA") == ["fd00:10:96::5"]
    assert short(clusterdns, f"web.prod.svc.{Z}") == ["10.244.1.10", "10.244.2.11", "10.244.3.12"]
    assert short(clusterdns, f"_grpc._tcp.api.prod.svc.{Z}", "SRV") == [
        f"0 50 9090 api.prod.svc.{Z}."
    ]
    assert short(clusterdns, "-x", "10.96.5.5") == [f"api.prod.svc.{Z}."]
    assert short(clusterdns, "-x", "10.244.1.10") == [f"web-0.web.prod.svc.{Z}."]
    assert short(clusterdns, f"db.prod.svc.{Z}") == ["192.0.2.50", "db.example.com."]
    assert status(clusterdns, f"api.nosuchns.svc.{Z}") == "NXDOMAIN"
    assert status(clusterdns, f"empty-ns.svc.{Z}") == "NOERROR"


def test_cluster_ips_allocated_by_the_apiserver(clusterdns: DnsServer, kube: Any) -> None:
    core: Any = client.CoreV1Api(kube)
    svc = core.read_namespaced_service("app", "ctl")
    ip = svc.spec.cluster_ip
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/16")
    assert short(clusterdns, f"app.ctl.svc.{Z}") == [ip]
    assert short(clusterdns, "-x", ip) == [f"app.ctl.svc.{Z}."]


def test_endpointslices_written_by_the_controller(clusterdns: DnsServer) -> None:
    # app-2 is not Ready: the controller lists it as not ready, DNS leaves it out.
    assert short(clusterdns, f"app-hl.ctl.svc.{Z}") == ["10.244.5.10", "10.244.5.11"]
    assert short(clusterdns, f"app-0.app-hl.ctl.svc.{Z}") == ["10.244.5.10"]
    assert short(clusterdns, f"_http._tcp.app-hl.ctl.svc.{Z}", "SRV") == [
        f"0 50 8080 app-0.app-hl.ctl.svc.{Z}.",
        f"0 50 8080 app-1.app-hl.ctl.svc.{Z}.",
    ]
    assert short(clusterdns, f"_http._tcp.app.ctl.svc.{Z}", "SRV") == [f"0 100 80 app.ctl.svc.{Z}."]


def test_pod_readiness_follows_status_patches(clusterdns: DnsServer, kube: Any) -> None:
    core: Any = client.CoreV1Api(kube)

    def ready(value: str) -> None:
        body = {"status": {"conditions": [{"type": "Ready", "status": value}]}}
        core.patch_namespaced_pod_status("app-2", "ctl", body)

    name = f"app-hl.ctl.svc.{Z}"
    ready("True")
    try:
        eventually("app-2 in DNS", lambda: "10.244.5.12" in short(clusterdns, name))
    finally:
        ready("False")
    eventually("app-2 out of DNS", lambda: "10.244.5.12" not in short(clusterdns, name))


def test_new_service_then_namespace_deletion(clusterdns: DnsServer, kube: Any) -> None:
    core: Any = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": "tmp-ns"}})
    svc = core.create_namespaced_service(
        "tmp-ns", {"metadata": {"name": "x"}, "spec": {"ports": [{"name": "p", "port": 1}]}}
    )
    name = f"x.tmp-ns.svc.{Z}"
    eventually("the new service", lambda: short(clusterdns, name) == [svc.spec.cluster_ip])
    # The namespace controller deletes the service, then the namespace.
    core.delete_namespace("tmp-ns")
    eventually("the service gone", lambda: status(clusterdns, name) == "NXDOMAIN", 90)
    eventually(
        "the namespace gone", lambda: status(clusterdns, f"tmp-ns.svc.{Z}") == "NXDOMAIN", 90
    )
