"""API credentials: build a kubernetes `ApiClient` the way CoreDNS's kubernetes plugin does.

In-cluster service account by default; `endpoint URL` (with optional `tls CERT KEY CACERT`, or
none at all for a plain `http://127.0.0.1:PORT` such as `kubectl proxy`); `kubeconfig PATH
[CONTEXT]`, which wins over `endpoint`. Each client gets its own fresh `Configuration`: the
client's global default configuration is never read or written. Opens no connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from clusterdns.errors import WatchError


class ConnectError(WatchError):
    """The API credentials or address could not be loaded."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Client certificate, key and CA bundle for `endpoint` (the `tls` option)."""

    cert: str
    key: str
    ca: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiAccess:
    """Where the API server is and how to authenticate (the kubernetes plugin's options)."""

    endpoint: str | None = None
    """API server URL; None means in-cluster. Ignored when `kubeconfig` is set."""
    tls: TlsFiles | None = None
    """Client TLS files for `endpoint`."""
    kubeconfig: str | None = None
    """Path of a kubeconfig file."""
    context: str | None = None
    """Context in `kubeconfig`; None means its current context."""


def api_client(access: ApiAccess) -> client.ApiClient:
    """A client for `access`, with its own configuration; raise ConnectError with the cause."""
    cfg = client.Configuration()
    if access.kubeconfig is not None:
        _load_kubeconfig(cfg, access.kubeconfig, access.context)
    elif access.endpoint is not None:
        _load_endpoint(cfg, access.endpoint, access.tls)
    else:
        _load_incluster(cfg)
    # The reflectors retry with their own backoff: no silent (and log-spamming) urllib3 retries.
    cfg.retries = 0
    cfg.keep_alive = True  # TCP keepalive, so a silently dead watch connection gets noticed
    return client.ApiClient(configuration=cfg)


def close_client(api: client.ApiClient) -> None:
    """Close the client's connection pool (after its reflectors have stopped)."""
    api.close()  # type: ignore[no-untyped-call]


def _load_kubeconfig(cfg: client.Configuration, path: str, context: str | None) -> None:
    if not os.path.isfile(path):
        raise ConnectError(f"kubeconfig {path}: no such file")
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path,
            context=context,
            client_configuration=cfg,
            persist_config=False,  # never rewrite the operator's file (token refreshes)
        )
    except ConfigException as exc:
        where = f"kubeconfig {path}" + (f" context {context!r}" if context else "")
        raise ConnectError(f"{where}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ConnectError(f"kubeconfig {path}: {exc}") from exc


def _load_endpoint(cfg: client.Configuration, endpoint: str, tls: TlsFiles | None) -> None:
    if not endpoint.startswith(("http://", "https://")):
        raise ConnectError(f"endpoint {endpoint!r}: expected an http:// or https:// URL")
    cfg.host = endpoint.rstrip("/")
    if tls is not None:
        for what, path in (("certificate", tls.cert), ("key", tls.key), ("CA", tls.ca)):
            if not os.path.isfile(path):
                raise ConnectError(f"tls {what} {path}: no such file")
        cfg.cert_file = tls.cert
        cfg.key_file = tls.key
        cfg.ssl_ca_cert = tls.ca


def _load_incluster(cfg: client.Configuration) -> None:
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise ConnectError(
            f"in-cluster configuration: {exc} (outside a cluster, set endpoint or kubeconfig)"
        ) from exc
    except OSError as exc:
        raise ConnectError(f"in-cluster configuration: {exc}") from exc
