"""YamlSource: kubectl dumps, manifests and folders as a ListWatch, edits picked up by relisting."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from clusterdns.k8s.controller import POD_FIELD_SELECTOR, Controller
from clusterdns.k8s.objects import Kind
from clusterdns.k8s.reflector import BackoffPolicy
from clusterdns.k8s.source import Gone, Unavailable
from clusterdns.k8s.store import Store
from clusterdns.k8s.yamlsource import FieldSelector, LabelSelector, YamlSource

from .scripted import Changes

ALL = [Kind.SERVICE, Kind.ENDPOINTSLICE, Kind.NAMESPACE, Kind.POD]
LOGGER = "clusterdns.plugins.kubernetes"

KUBECTL_DUMP = """\
apiVersion: v1
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: apps
    resourceVersion: "12"
- apiVersion: v1
  kind: Service
  metadata:
    name: web
    namespace: apps
  spec:
    clusterIP: 10.96.1.1
    clusterIPs: [10.96.1.1]
    ports:
    - name: http
      port: 80
      protocol: TCP
    type: ClusterIP
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: web-x1
    namespace: apps
    labels:
      kubernetes.io/service-name: web
  addressType: IPv4
  endpoints:
  - addresses: [10.244.2.5]
    conditions: {ready: true}
    targetRef: {kind: Pod, name: web-0, namespace: apps}
  ports:
  - name: http
    port: 8080
    protocol: TCP
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-0
    namespace: apps
  status:
    phase: Running
    podIP: 10.244.2.5
- apiVersion: v1
  kind: Pod
  metadata:
    name: job-1
    namespace: apps
  status:
    phase: Succeeded
    podIP: 10.244.2.9
kind: List
metadata:
  resourceVersion: ""
"""

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: cart
  namespace: shop
  labels: {tier: backend}
spec:
  clusterIP: 10.96.2.2
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cart
  namespace: shop
---
apiVersion: v1
kind: Service
metadata:
  name: plain
spec:
  type: ExternalName
  externalName: example.org
---
"""


@asynccontextmanager
async def serving(
    paths: Sequence[Path], *, poll_s: float = 0.02
) -> AsyncIterator[tuple[YamlSource, Store, Controller, Changes]]:
    source = YamlSource(paths, poll_s=poll_s)
    store = Store()
    store.expect(ALL)
    ctrl = Controller(
        source,
        store,
        asyncio.get_running_loop(),
        ALL,
        backoff=BackoffPolicy(initial_s=0.02, max_s=0.1),
    )
    changes = Changes(store, ctrl)
    ctrl.start()
    try:
        yield source, store, ctrl, changes
    finally:
        ctrl.stop()
        assert await asyncio.to_thread(ctrl.join, 10)


def write(path: Path, text: str) -> None:
    """Write and make sure the fingerprint changes even within one mtime tick."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


async def test_kubectl_dump_list(tmp_path: Path) -> None:
    dump = tmp_path / "cluster.yaml"
    dump.write_text(KUBECTL_DUMP)
    async with serving([dump]) as (_, store, ctrl, _changes):
        assert await ctrl.wait_synced(10)
        assert store.has_namespace("apps")
        assert store.services[("apps", "web")].cluster_ips == ("10.96.1.1",)
        assert [a.ip for a in store.slices[("apps", "web-x1")].addresses] == ["10.244.2.5"]
        assert set(store.pods) == {("apps", "web-0")}  # the Succeeded pod is filtered out


def test_list_filters_and_field_selector(tmp_path: Path) -> None:
    dump = tmp_path / "cluster.yaml"
    dump.write_text(KUBECTL_DUMP)
    source = YamlSource([dump])
    pods = source.list(Kind.POD)
    assert sorted(p["metadata"]["name"] for p in pods.items) == ["job-1", "web-0"]
    running = source.list(Kind.POD, field_selector=POD_FIELD_SELECTOR)
    assert [p["metadata"]["name"] for p in running.items] == ["web-0"]
    assert pods.resource_version == running.resource_version == source.fingerprint()
    assert pods.continue_token is None


def test_multi_document_manifests(tmp_path: Path) -> None:
    path = tmp_path / "shop.yml"
    path.write_text(MANIFESTS)
    source = YamlSource([path])
    services = {s["metadata"]["name"]: s for s in source.list(Kind.SERVICE).items}
    assert set(services) == {"cart", "plain"}
    assert services["plain"]["metadata"]["namespace"] == "default"
    assert [n["metadata"]["name"] for n in source.list(Kind.NAMESPACE).items] == ["shop"]
    backend = source.list(Kind.SERVICE, label_selector="tier=backend").items
    assert [s["metadata"]["name"] for s in backend] == ["cart"]


async def test_folder_of_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a-namespaces.yaml").write_text("kind: Namespace\nmetadata: {name: apps}\n")
    (tmp_path / "sub" / "svc.json").write_text(
        json.dumps(
            {
                "kind": "ServiceList",
                "apiVersion": "v1",
                "items": [
                    {
                        "metadata": {"name": "web", "namespace": "apps"},
                        "spec": {"clusterIP": "10.96.0.7"},
                    }
                ],
            }
        )
    )
    (tmp_path / "notes.txt").write_text("not: [yaml")
    (tmp_path / ".hidden.yaml").write_text("not: [yaml")
    async with serving([tmp_path]) as (source, store, ctrl, _changes):
        assert await ctrl.wait_synced(10)
        assert store.has_namespace("apps")
        assert ("apps", "web") in store.services
        assert [p.name for p in source.files()] == ["a-namespaces.yaml", "svc.json"]


async def test_edit_is_picked_up(tmp_path: Path) -> None:
    dump = tmp_path / "cluster.yaml"
    dump.write_text(KUBECTL_DUMP)
    async with serving([dump]) as (_, store, ctrl, changes):
        assert await ctrl.wait_synced(10)
        write(dump, KUBECTL_DUMP.replace("10.96.1.1", "10.96.1.99"))
        await changes.until(
            lambda: store.services[("apps", "web")].cluster_ips == ("10.96.1.99",), 20
        )
        write(dump, MANIFESTS)
        # Each kind relists on its own: wait for the whole new state.
        await changes.until(
            lambda: (
                set(store.services) == {("shop", "cart"), ("default", "plain")}
                and set(store.namespaces) == {"shop"}
                and not store.pods
                and not store.slices
            ),
            20,
        )


async def test_bad_yaml_keeps_the_previous_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    dump = tmp_path / "cluster.yaml"
    dump.write_text(KUBECTL_DUMP)
    async with serving([dump]) as (source, store, ctrl, changes):
        assert await ctrl.wait_synced(10)
        write(dump, "items:\n  - kind: Service\n   metadata: [broken\n")
        await changes.until(lambda: bool(ctrl.status().errors), 20)
        assert ("apps", "web") in store.services and store.has_namespace("apps")
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and all(m.startswith(f"{dump}: ") for m in errors), errors
        assert len(errors) == 1  # logged once per version of the files, not per retry
        with pytest.raises(Unavailable):
            source.list(Kind.SERVICE)
        write(dump, KUBECTL_DUMP.replace("name: web\n", "name: web2\n"))
        await changes.until(lambda: ("apps", "web2") in store.services, 20)
        assert ("apps", "web") not in store.services
        await changes.until(lambda: not ctrl.status().errors, 20)


def test_bad_yaml_at_start_is_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [")
    with pytest.raises(Unavailable, match=r"bad\.yaml"):
        YamlSource([bad]).list(Kind.SERVICE)
    with pytest.raises(Unavailable, match="missing"):
        YamlSource([tmp_path / "missing.yaml"]).list(Kind.SERVICE)


def test_watch_raises_gone_on_change_and_ends_on_close(tmp_path: Path) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text("kind: Namespace\nmetadata: {name: a}\n")
    source = YamlSource([path], poll_s=0.01)
    rv = source.list(Kind.NAMESPACE).resource_version
    stream = source.watch(Kind.NAMESPACE, resource_version=rv, timeout_s=0)
    assert list(stream) == []  # timeout reached, no change
    write(path, "kind: Namespace\nmetadata: {name: b}\n")
    with pytest.raises(Gone):
        list(source.watch(Kind.NAMESPACE, resource_version=rv, timeout_s=60))
    new_rv = source.fingerprint()
    stream = source.watch(Kind.NAMESPACE, resource_version=new_rv, timeout_s=60)
    stream.close()
    assert list(stream) == []


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("env in (qa, staging)", {"env": "qa"}, True),
        ("env in (qa, staging),app=web", {"env": "qa", "app": "db"}, False),
        ("env notin (prod)", {"env": "qa"}, True),
        ("env notin (prod)", {}, True),
        ("tier", {"tier": ""}, True),
        ("!tier", {"tier": "x"}, False),
        ("!tier", {}, True),
        ("example.com/part-of=x", {"example.com/part-of": "x"}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse(selector).matches(labels) is expected


def test_selector_errors() -> None:
    with pytest.raises(ValueError, match="invalid label selector"):
        LabelSelector.parse("a in b")
    with pytest.raises(ValueError, match="invalid field selector"):
        FieldSelector.parse("status.phase")
    assert FieldSelector.parse("metadata.name=x").matches({"metadata": {"name": "x"}})
    assert FieldSelector.parse("spec.nodeName!=n1").matches({})
