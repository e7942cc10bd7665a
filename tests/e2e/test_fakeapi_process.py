"""The API test double as a separate process (`python -m tests.k8s.fakeapi`), as the scale
benchmark runs it: the synthetic cluster, YAML seeding, and the control port."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.support import JSON, REFERENCE_YAML, ROOT
from tests.k8s.fakeapi import synthetic_cluster, synthetic_service

TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def fakeapi_process(*args: str) -> AsyncIterator[JSON]:
    """Start the double; yields the JSON line it prints once listening. Stopped on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.k8s.fakeapi",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            line = await proc.stdout.readline()
        assert line, (await proc.stderr.read()).decode()
        info: JSON = json.loads(line)
        yield info
        proc.terminate()  # SIGTERM: a clean stop
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _request(url: str, method: str, path: str, body: JSON | None = None) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


async def request(url: str, method: str, path: str, body: JSON | None = None) -> tuple[int, Any]:
    """One HTTP request with a JSON answer (in a thread)."""
    return await asyncio.to_thread(_request, url, method, path, body)


def names(listing: JSON) -> list[str]:
    return [item["metadata"]["name"] for item in listing["items"]]


async def test_synthetic_cluster_and_control_port() -> None:
    args = ("--services", "4", "--endpoints-per-slice", "3", "--namespaces", "2")
    async with fakeapi_process(*args) as info:
        assert info["objects"] == 2 + 4 + 4
        api, control = info["api"], info["control"]
        status, services = await request(api, "GET", "/api/v1/services")
        assert status == 200
        assert names(services) == ["svc-00000", "svc-00002", "svc-00001", "svc-00003"]
        status, slices = await request(api, "GET", "/apis/discovery.k8s.io/v1/endpointslices")
        assert status == 200 and len(slices["items"]) == 4
        assert all(len(s["endpoints"]) == 3 for s in slices["items"])
        ips = {a for s in slices["items"] for e in s["endpoints"] for a in e["addresses"]}
        assert len(ips) == 12

        moved = synthetic_service(1, 2, cluster_ip="10.100.0.1")
        status, answer = await request(control, "POST", "/create", moved)
        assert status == 200 and int(answer["resourceVersion"]) > 0
        status, services = await request(api, "GET", "/api/v1/services")
        by_name = {s["metadata"]["name"]: s for s in services["items"]}
        assert by_name["svc-00001"]["spec"]["clusterIP"] == "10.100.0.1"

        body = {"kind": "Service", "namespace": "ns-000", "name": "svc-00000"}
        assert (await request(control, "POST", "/delete", body))[0] == 200
        assert (await request(control, "POST", "/delete", body))[0] == 404
        status, state = await request(control, "GET", "/status")
        assert status == 200 and state["objects"]["services"] == 3 and state["up"]

        assert (await request(control, "POST", "/forbid", {"resource": "services"}))[0] == 200
        status, denied = await request(api, "GET", "/api/v1/services")
        assert status == 403 and denied["reason"] == "Forbidden"
        assert (await request(control, "POST", "/allow", {"resource": "services"}))[0] == 200

        assert (await request(control, "POST", "/down"))[0] == 200
        with pytest.raises(ConnectionRefusedError):
            await request(api, "GET", "/api/v1/services")
        assert (await request(control, "POST", "/up"))[0] == 200
        assert (await request(api, "GET", "/api/v1/namespaces"))[0] == 200

        assert (await request(control, "POST", "/nosuch"))[0] == 404
        assert (await request(control, "POST", "/create", {"kind": "Nope"}))[0] == 400


async def test_yaml_seeding() -> None:
    async with fakeapi_process("--yaml", str(REFERENCE_YAML)) as info:
        status, namespaces = await request(info["api"], "GET", "/api/v1/namespaces")
        assert status == 200
        assert sorted(names(namespaces)) == ["default", "empty-ns", "kube-system", "prod"]
        status, pods = await request(info["api"], "GET", "/api/v1/pods")
        assert status == 200 and names(pods) == ["client"]


def test_synthetic_cluster_sizes() -> None:
    objects = synthetic_cluster(10, 15, 3)
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Namespace") == 3
    assert kinds.count("Service") == 10 and kinds.count("EndpointSlice") == 10
    assert synthetic_cluster(0, 15, 3) == []
    with pytest.raises(ValueError, match="do not fit"):
        synthetic_cluster(1_100_000, 1, 1)
