"""connect.py: endpoint, tls, kubeconfig and in-cluster credentials, with clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from clusterdns.k8s.connect import ApiAccess, ConnectError, TlsFiles, api_client, close_client
from clusterdns.k8s.objects import Kind
from clusterdns.k8s.source import KubeSource

from .fakeapi import FakeApi


@pytest.fixture
def fake() -> Iterator[FakeApi]:
    api = FakeApi().start()
    api.create({"kind": "Namespace", "metadata": {"name": "apps"}})
    yield api
    api.down()


def kubeconfig(path: Path, servers: dict[str, str], current: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": n, "cluster": {"server": url}} for n, url in servers.items()],
                "users": [{"name": "me", "user": {"token": "t0ken"}}],
                "contexts": [{"name": n, "context": {"cluster": n, "user": "me"}} for n in servers],
                "current-context": current,
            }
        )
    )
    return path


def names(c: client.ApiClient) -> list[str]:
    page = KubeSource(c, connect_timeout_s=2, read_timeout_s=5).list(Kind.NAMESPACE)
    return [item["metadata"]["name"] for item in page.items]


def test_plain_http_endpoint(fake: FakeApi) -> None:
    c = api_client(ApiAccess(endpoint=fake.url + "/"))
    try:
        assert c.configuration.host == fake.url
        assert names(c) == ["apps"]
    finally:
        close_client(c)


def test_kubeconfig_current_and_named_context(fake: FakeApi, tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "config", {"good": fake.url, "other": "http://127.0.0.1:9"}, current="other"
    )
    before = client.Configuration.get_default_copy().host
    c = api_client(ApiAccess(kubeconfig=str(path), context="good"))
    try:
        assert c.configuration.host == fake.url
        assert c.configuration.api_key["BearerToken"] == "Bearer t0ken"
        assert names(c) == ["apps"]
    finally:
        close_client(c)
    current = api_client(ApiAccess(kubeconfig=str(path), endpoint="http://ignored:1"))
    assert current.configuration.host == "http://127.0.0.1:9"
    close_client(current)
    assert client.Configuration.get_default_copy().host == before  # global default untouched


def test_kubeconfig_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="no such file"):
        api_client(ApiAccess(kubeconfig=str(tmp_path / "nope")))
    path = kubeconfig(tmp_path / "config", {"a": "http://127.0.0.1:9"}, current="a")
    with pytest.raises(ConnectError, match="context 'missing'") as err:
        api_client(ApiAccess(kubeconfig=str(path), context="missing"))
    assert err.value.__cause__ is not None


def test_tls_files(tmp_path: Path) -> None:
    for name in ("c.crt", "c.key", "ca.crt"):
        (tmp_path / name).write_text("-")
    tls = TlsFiles(str(tmp_path / "c.crt"), str(tmp_path / "c.key"), str(tmp_path / "ca.crt"))
    c = api_client(ApiAccess(endpoint="https://10.0.0.1:6443", tls=tls))
    assert (c.configuration.cert_file, c.configuration.key_file, c.configuration.ssl_ca_cert) == (
        tls.cert,
        tls.key,
        tls.ca,
    )
    close_client(c)
    missing = TlsFiles(tls.cert, str(tmp_path / "missing.key"), tls.ca)
    with pytest.raises(ConnectError, match=r"missing\.key"):
        api_client(ApiAccess(endpoint="https://10.0.0.1:6443", tls=missing))


def test_endpoint_must_be_a_url() -> None:
    with pytest.raises(ConnectError, match="http:// or https://"):
        api_client(ApiAccess(endpoint="10.0.0.1:6443"))


def test_in_cluster_outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(ConnectError, match="in-cluster configuration"):
        api_client(ApiAccess())
