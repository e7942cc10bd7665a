"""A reload keeps the kubernetes watch cache when the directive and its zones did not change.

The API server is the fake from tests/k8s/fakeapi.py; list requests are counted there.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterdns.plugins.kubernetes import Watch
from tests.k8s.fakeapi import FakeApi
from tests.plugins.reload.harness import Running, answers, running

COREFILE = """\
cluster.local:0 {{
    bind 127.0.0.1
    reload 1h
{above}    kubernetes {{
        endpoint {url}
{options}    }}
}}
example.org:0 {{
    bind 127.0.0.1
    hosts {{
        {addr} www.example.org
    }}
}}
"""
SERVICE = "web.default.svc.cluster.local."


def objects() -> list[dict[str, Any]]:
    return [
        {"kind": "Namespace", "metadata": {"name": "default"}},
        {
            "kind": "Service",
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            },
        },
    ]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi().start()
    fake.load(objects())
    yield fake
    fake.down()


def corefile(api: FakeApi, *, addr: str = "192.0.2.1", above: str = "", options: str = "") -> str:
    return COREFILE.format(url=api.url, addr=addr, above=above, options=options)


def watches(r: Running) -> list[Watch]:
    found = [lease.value for lease in r.config.process.resources.leases]
    assert all(isinstance(w, Watch) for w in found)
    return found  # type: ignore[return-value]


def lists(api: FakeApi) -> int:
    return len(api.requests(verb="list"))


async def test_unchanged_kubernetes_directive_keeps_the_watch(tmp_path: Path, api: FakeApi) -> None:
    async with running(tmp_path / "Corefile", corefile(api)) as r:
        (watch,) = watches(r)
        store = watch.store
        listed = lists(api)
        assert listed >= 2 and store.synced
        assert answers(await r.query(SERVICE)) == ["10.96.0.10"]

        # Another block changed: same Watch, same Store, no list request, still watching.
        old = weakref.ref(r.config)
        r.write(corefile(api, addr="192.0.2.2"))
        assert await r.check() is True
        assert watches(r) == [watch] and watch.store is store
        gc.collect()
        assert old() is None  # the kept store does not hold on to the old configuration
        assert len(store.listeners) == 1  # only the running handler is notified
        assert watch.controller is not None  # the old configuration's shutdown left it alone
        assert lists(api) == listed
        assert answers(await r.query("www.example.org.")) == ["192.0.2.2"]
        assert answers(await r.query(SERVICE)) == ["10.96.0.10"]

        # The directive moved down a line (line numbers do not count): kept.
        r.write(corefile(api, addr="192.0.2.2", above="    # the cluster\n"))
        assert await r.check() is True
        assert watches(r) == [watch] and lists(api) == listed

        # A reload that fails leaves the watch with the configuration that keeps serving.
        r.write(corefile(api, addr="192.0.2.2").replace("hosts {", "hosts {\n        ttl 0"))
        assert await r.check() is True
        assert watches(r) == [watch] and watch.controller is not None
        assert lists(api) == listed and len(store.listeners) == 1

        # Events still reach the kept store.
        api.create(
            {
                "kind": "Service",
                "metadata": {"namespace": "default", "name": "api"},
                "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.11", "ports": []},
            }
        )
        async with asyncio.timeout(10):
            while answers(await r.query("api.default.svc.cluster.local.")) != ["10.96.0.11"]:
                await asyncio.sleep(0)
    assert watch.controller is None  # stopped with the last configuration that owned it


@pytest.mark.parametrize(
    "change",
    [
        {"options": "        ttl 10\n"},
        {"options": "        endpoint_pod_names\n"},
    ],
    ids=["option", "another-option"],
)
async def test_changed_kubernetes_directive_gets_a_new_watch(
    tmp_path: Path, api: FakeApi, change: dict[str, str]
) -> None:
    async with running(tmp_path / "Corefile", corefile(api)) as r:
        (old,) = watches(r)
        listed = lists(api)
        for _ in range(2):  # the second answer may come from the fast path
            assert (await r.query(SERVICE)).rr[0].ttl == 5
        r.write(corefile(api, **change))
        assert await r.check() is True
        (new,) = watches(r)
        assert new is not old and new.store is not old.store
        assert new.store.synced  # set up completely before the switch
        assert lists(api) == 2 * listed
        assert old.controller is None  # the replaced watch stopped
        assert answers(await r.query(SERVICE)) == ["10.96.0.10"]
        if "ttl" in change["options"]:
            assert (await r.query(SERVICE)).rr[0].ttl == 10  # no reply of the old chain replayed


async def test_changed_block_zones_get_a_new_watch(tmp_path: Path, api: FakeApi) -> None:
    text = corefile(api)
    async with running(tmp_path / "Corefile", text) as r:
        (old,) = watches(r)
        r.write(text.replace("cluster.local:0 {", "cluster.local:0 svc.example:0 {"))
        assert await r.check() is True
        (new,) = watches(r)
        assert new is not old and old.controller is None
