"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The binaries come from `realcluster/build.sh` (built from the Go module proxy into the user's
cache directory). Certificates and service-account keys are generated with `openssl`. Every
process listens on 127.0.0.1 only, on ports picked free at start, and is stopped by its PID.
"""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from tests.ports import free_tcp_port

ROOT: Final = Path(__file__).resolve().parents[2]
VERSIONS_FILE: Final = ROOT / "realcluster" / "versions.env"
SERVICE_CIDRS: Final = "10.96.0.0/16,fd00:10:96::/112"
START_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 15.0


class ControlPlaneError(RuntimeError):
    """A component could not be started; the message names it and quotes its log."""


def versions() -> dict[str, str]:
    """The pins of realcluster/versions.env."""
    out: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def bin_dir() -> Path:
    """Where build.sh put the binaries ($REALCLUSTER_BIN, else computed as build.sh does)."""
    if env := os.environ.get("REALCLUSTER_BIN"):
        return Path(env)
    v = versions()
    cache = os.environ.get("REALCLUSTER_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clusterdns-realcluster"
    )
    name = "k8s-{}_coredns-{}_etcd-{}".format(
        *(v[k].removeprefix("v") for k in ("K8S_VERSION", "COREDNS_VERSION", "ETCD_VERSION"))
    )
    return Path(cache) / name / "bin"


def binary(name: str) -> Path:
    """Path of a built binary; a clear error if the build has not run."""
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise ControlPlaneError(
            f"{path} is missing: run scripts/test-realcluster (it builds the pinned components "
            "with realcluster/build.sh) instead of pytest directly"
        )
    return path


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Process:
    """One started component, its log file, and how to stop it by PID."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM (if still running), without waiting."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; always reaps the process."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()


def start(name: str, argv: Sequence[str | Path], logdir: Path, **env: str) -> Process:
    """Start argv with stdout and stderr in logdir/NAME.log."""
    log = logdir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    return Process(name, proc, log)


def wait_until(
    what: str, check: Callable[[], bool], proc: Process | None, timeout: float = START_TIMEOUT_S
) -> None:
    """Poll check() until true; fail naming `what` (with the log) on timeout or process exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise ControlPlaneError(
                f"{proc.name} exited with {proc.proc.returncode} while waiting for {what}:\n"
                + log_tail(proc.log)
            )
        if check():
            return
        time.sleep(0.25)
    tail = f":\n{log_tail(proc.log)}" if proc is not None else ""
    raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


def openssl(*args: str | Path) -> None:
    """Run openssl; raise with its output on failure."""
    res = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(map(str, args))} failed:\n{res.stderr}")


@dataclass
class Pki:
    """CA, apiserver serving certificate, admin client certificate, service-account key pair."""

    dir: Path

    def __post_init__(self) -> None:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            d / "ca.key",
            "-out",
            d / "ca.crt",
            "-subj",
            "/CN=realcluster-ca",
        )
        self._issue(
            "apiserver",
            "/CN=kube-apiserver",
            "serverAuth",
            "IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes.default.svc",
        )
        self._issue("admin", "/O=system:masters/CN=realcluster-admin", "clientAuth", None)
        openssl("genrsa", "-out", d / "sa.key", "2048")
        openssl("rsa", "-in", d / "sa.key", "-pubout", "-out", d / "sa.pub")

    def _issue(self, name: str, subject: str, usage: str, san: str | None) -> None:
        d = self.dir
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            d / f"{name}.key",
            "-out",
            d / f"{name}.csr",
            "-subj",
            subject,
        )
        ext = d / f"{name}.ext"
        ext.write_text(
            f"extendedKeyUsage={usage}\nkeyUsage=digitalSignature,keyEncipherment\n"
            + (f"subjectAltName={san}\n" if san else "")
        )
        openssl(
            "x509",
            "-req",
            "-in",
            d / f"{name}.csr",
            "-CA",
            d / "ca.crt",
            "-CAkey",
            d / "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            d / f"{name}.crt",
            "-extfile",
            ext,
        )

    def path(self, name: str) -> Path:
        return self.dir / name

    def b64(self, name: str) -> str:
        return base64.b64encode((self.dir / name).read_bytes()).decode()


def kubeconfig_text(
    server: str, ca_b64: str, user: dict[str, str], name: str = "realcluster"
) -> str:
    """A kubeconfig with one cluster, one user and one (current) context."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": ca_b64}}
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, with an admin kubeconfig."""

    workdir: Path
    processes: list[Process] = field(default_factory=list)
    api_port: int = 0
    pki: Pki | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        assert self.pki is not None
        return self.pki.path("ca.crt")

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """Write a kubeconfig that authenticates with a bearer token (a ServiceAccount's)."""
        assert self.pki is not None
        path.write_text(kubeconfig_text(self.server, self.pki.b64("ca.crt"), {"token": token}))
        return path

    def unreachable_kubeconfig(self, path: Path) -> Path:
        """The admin kubeconfig, but for a loopback port where no apiserver listens."""
        assert self.pki is not None
        user = {
            "client-certificate-data": self.pki.b64("admin.crt"),
            "client-key-data": self.pki.b64("admin.key"),
        }
        server = f"https://127.0.0.1:{free_tcp_port()}"
        path.write_text(kubeconfig_text(server, self.pki.b64("ca.crt"), user))
        return path

    def _https_status(self, port: int, path: str, client_cert: bool = True) -> int:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.path("ca.crt")))
        if client_cert:
            ctx.load_cert_chain(self.pki.path("admin.crt"), self.pki.path("admin.key"))
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{path}", context=ctx, timeout=5
            ) as r:
                status: int = r.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def start(self) -> None:
        """Start everything; raise ControlPlaneError naming what failed (with its log)."""
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.pki = pki = Pki(self.workdir / "pki")

        etcd_client, etcd_peer = free_tcp_port(), free_tcp_port()
        etcd = start(
            "etcd",
            [
                binary("etcd"),
                "--name=realcluster",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=realcluster=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
            ],
            logs,
        )
        self.processes.append(etcd)
        wait_until(
            "etcd /health",
            lambda: _http_status(f"http://127.0.0.1:{etcd_client}/health") == 200,
            etcd,
        )

        self.api_port = free_tcp_port()
        apiserver = start(
            "kube-apiserver",
            [
                binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                # The apiserver would publish its loopback address as the endpoint of
                # default/kubernetes, which validation rejects: keep that service without endpoints.
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CIDRS}",
                "--authorization-mode=Node,RBAC",
                f"--client-ca-file={pki.path('ca.crt')}",
                f"--tls-cert-file={pki.path('apiserver.crt')}",
                f"--tls-private-key-file={pki.path('apiserver.key')}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.path('sa.pub')}",
                f"--service-account-signing-key-file={pki.path('sa.key')}",
                "--profiling=false",
            ],
            logs,
        )
        self.processes.append(apiserver)
        wait_until(
            "kube-apiserver /readyz",
            lambda: self._https_status(self.api_port, "/readyz") == 200,
            apiserver,
        )

        self.admin_kubeconfig.write_text(
            kubeconfig_text(
                self.server,
                pki.b64("ca.crt"),
                {
                    "client-certificate-data": pki.b64("admin.crt"),
                    "client-key-data": pki.b64("admin.key"),
                },
            )
        )

        kcm_port = free_tcp_port()
        kcm = start(
            "kube-controller-manager",
            [
                binary("kube-controller-manager"),
                f"--kubeconfig={self.admin_kubeconfig}",
                f"--authentication-kubeconfig={self.admin_kubeconfig}",
                f"--authorization-kubeconfig={self.admin_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--service-account-private-key-file={pki.path('sa.key')}",
                f"--root-ca-file={pki.path('ca.crt')}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                # No kubelet runs: node lifecycle would mark the test pods not ready.
                "--controllers=*,-node-lifecycle-controller,-taint-eviction-controller",
                f"--service-cluster-ip-range={SERVICE_CIDRS}",
            ],
            logs,
        )
        self.processes.append(kcm)
        wait_until(
            "kube-controller-manager /healthz",
            lambda: self._https_status(kcm_port, "/healthz", client_cert=False) == 200,
            kcm,
        )

    def check_alive(self) -> None:
        """Raise if a component has died since start."""
        for p in self.processes:
            if not p.alive():
                raise ControlPlaneError(f"{p.name} (pid {p.pid}) died:\n{log_tail(p.log)}")

    def stop(self) -> None:
        """Stop every component by PID, in reverse start order."""
        for p in reversed(self.processes):
            p.stop()
        self.processes.clear()


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            status: int = r.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0
