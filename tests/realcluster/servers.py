"""DNS servers as processes on loopback: clusterdns (the CLI), CoreDNS (the built binary), and the
project's stub upstream (`python -m tests.upstream`). Each is started on a Corefile written to a
work directory, awaited through its `/ready` endpoint (or banner), and stopped by its PID.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.ports import free_udp_tcp_port
from tests.realcluster.controlplane import ROOT, Process, binary, log_tail, start

READY_TIMEOUT_S: Final = 60.0


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET (0 if nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return int(r.status), r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, ""


@dataclass
class DnsServer:
    """A started DNS server: its DNS port, side ports and log."""

    name: str
    process: Process
    port: int
    ready_port: int

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.ready_port}/ready"

    def log(self) -> str:
        return self.process.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise AssertionError(f"{self.name} exited:\n{log_tail(self.process.log)}")
            if http_get(self.ready_url)[0] == 200:
                return
            time.sleep(0.2)
        raise AssertionError(
            f"{self.name} not ready after {timeout:.0f} s:\n{log_tail(self.process.log)}"
        )

    def wait_log(self, pattern: str, timeout: float = 30.0) -> str:
        """Wait for a log line matching `pattern` (regex); the line."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if rx.search(line):
                    return line
            if not self.process.alive():
                break
            time.sleep(0.2)
        raise AssertionError(
            f"{self.name}: no log line matching {pattern!r}:\n{self.log()[-3000:]}"
        )

    def stop(self) -> None:
        self.process.stop()


def stop_all(servers: list[DnsServer]) -> None:
    """SIGTERM every server at once, then wait for each (lameduck runs in parallel)."""
    for s in servers:
        s.process.terminate()
    for s in servers:
        s.stop()


def kubeadm_corefile(
    *,
    port: int,
    ready_port: int,
    health_port: int,
    metrics_port: int,
    kubeconfig: Path,
    upstream: int,
    cache: str,
    pods: str = "pods insecure",
) -> str:
    """The kubeadm Corefile (spec §0.3), with a kubeconfig, loopback side ports and the stub
    upstream; `cache` is "" (no cache), "old" (`cache 30`) or "block" (the newer kubeadm form);
    `pods` replaces the `pods insecure` line (with more option lines if need be)."""
    cache_lines = {
        "": "",
        "old": "    cache 30\n",
        "block": "    cache 30 {\n       disable success cluster.local\n"
        "       disable denial cluster.local\n    }\n",
    }[cache]
    return (
        f".:{port} {{\n"
        "    errors\n"
        f"    health 127.0.0.1:{health_port} {{\n       lameduck 5s\n    }}\n"
        f"    ready 127.0.0.1:{ready_port}\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        f"       kubeconfig {kubeconfig}\n"
        f"       {pods}\n"
        "       fallthrough in-addr.arpa ip6.arpa\n"
        "       ttl 30\n"
        "    }\n"
        f"    prometheus 127.0.0.1:{metrics_port}\n"
        f"    forward . 127.0.0.1:{upstream} {{\n       max_concurrent 1000\n    }}\n"
        f"{cache_lines}"
        "    loop\n"
        "    reload\n"
        "    loadbalance\n"
        "}\n"
    )


def start_dns(name: str, workdir: Path, corefile: str, port: int, ready_port: int) -> DnsServer:
    """Start `clusterdns` or `coredns` on a Corefile (not yet awaited)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / f"Corefile.{name}"
    conf.write_text(corefile)
    if name.startswith("coredns"):
        argv: list[str | Path] = [binary("coredns"), "-conf", conf]
    else:
        argv = [sys.executable, "-m", "clusterdns", "-conf", conf]
    proc = start(name, argv, workdir, PYTHONPATH=str(ROOT))
    return DnsServer(name, proc, port, ready_port)


@dataclass
class Upstream:
    """The project's stub upstream (tests/upstream.py) as a process on 127.0.0.1."""

    process: Process
    port: int

    def stop(self) -> None:
        self.process.stop()


def start_upstream(workdir: Path) -> Upstream:
    """Start `python -m tests.upstream` and wait for its `listening on` line."""
    port = free_udp_tcp_port()
    proc = start(
        "upstream",
        [sys.executable, "-m", "tests.upstream", "--host", "127.0.0.1", "--port", str(port)],
        workdir,
        PYTHONPATH=str(ROOT),
    )
    deadline = time.monotonic() + 30
    while "listening on" not in proc.log.read_text(errors="replace"):
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise AssertionError(f"stub upstream did not start:\n{log_tail(proc.log)}")
        time.sleep(0.1)
    return Upstream(proc, port)


def dig(server: DnsServer, *args: str) -> str:
    """Run `dig @127.0.0.1 -p PORT ARGS +noall +answer`; its output."""
    res = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), "+time=3", "+tries=1", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return res.stdout
