"""Apex NS and `ns.dns.<zone>` (spec §6.6, §6.14), which depend on the server's own addresses.

Each case creates a network namespace with a unique name, `lo` up and one more interface (a
`dummy`, or where the kernel has no dummy driver a veth pair with both ends inside) holding the
case's /32 addresses, with IPv6 address generation off so no link-local address joins the glue.
The real CLI runs inside it (`ip netns exec NAME python -m clusterdns -conf FILE`) on the
reference cluster from YAML, and `dig` asks it from inside. The namespace has no route off the
machine and the Corefiles have no `forward`. The server is killed and the namespace deleted
whatever happens.

In the reference cluster kube-dns has the endpoints 10.244.0.2 and 10.244.0.3: a server holding
10.244.0.2 is "inside the cluster"; one holding 192.0.2.7 is outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.e2e.support import REFERENCE_YAML, ROOT, DigReply, parse_dig, records, soa

COMMAND_TIMEOUT_S: Final = 30.0
START_TIMEOUT_S: Final = 60.0
PORT: Final = 1053
"""Free in a fresh namespace."""


def unavailable() -> str | None:
    """Why this machine cannot run these tests, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "dig"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    return None


pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


async def run(*argv: str, check: bool = True) -> tuple[int, str]:
    """Run a command (bounded in time); returns (exit status, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    assert proc.returncode is not None
    if check and proc.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed ({proc.returncode}): {text.strip()}")
    return proc.returncode, text


async def add_interface(ns: str) -> str:
    """Add an interface to `ns` for the test addresses; returns its name."""
    links = ["cdns0"]
    code, _ = await run("ip", "-n", ns, "link", "add", "cdns0", "type", "dummy", check=False)
    if code != 0:  # no dummy driver in this kernel: a veth pair, both ends inside
        await run("ip", "-n", ns, "link", "add", "cdns0", "type", "veth", "peer", "name", "cdns1")
        links.append("cdns1")
    for link in links:
        await run("ip", "-n", ns, "link", "set", "dev", link, "addrgenmode", "none")
        await run("ip", "-n", ns, "link", "set", "dev", link, "up")
    return "cdns0"


@contextlib.asynccontextmanager
async def namespace_with(*addresses: str) -> AsyncIterator[str]:
    """A fresh network namespace holding `addresses` (as /32); deleted on exit."""
    name = f"cdns-e2e-{os.getpid()}-{secrets.token_hex(3)}"
    created = False
    try:
        await run("ip", "netns", "add", name)
        created = True
        await run("ip", "-n", name, "link", "set", "lo", "up")
        iface = await add_interface(name)
        for address in addresses:
            await run("ip", "-n", name, "addr", "add", f"{address}/32", "dev", iface)
        yield name
    finally:
        if created:
            await run("ip", "netns", "delete", name, check=False)


@contextlib.asynccontextmanager
async def cli_in(ns: str, corefile: str, tmp_path: Path) -> AsyncIterator[None]:
    """The real CLI serving `corefile` inside `ns`; returns once its banner is out; killed."""
    conf = tmp_path / "Corefile"
    conf.write_text(corefile)
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        ns,
        sys.executable,
        "-m",
        "clusterdns",
        "-conf",
        str(conf),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                raw = await proc.stdout.readline()
                assert raw, "the server exited before its banner:\n" + "\n".join(seen)
                line = raw.decode(errors="replace").rstrip()
                seen.append(line)
                if line.startswith("clusterdns-"):
                    break
        yield
    finally:
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await proc.wait()


async def dig_in(ns: str, *args: str) -> DigReply:
    _, out = await run(
        "ip",
        "netns",
        "exec",
        ns,
        "dig",
        "@127.0.0.1",
        "-p",
        str(PORT),
        "+tries=1",
        "+time=5",
        *args,
    )
    return parse_dig(out)


def corefile(bind: str | None = None) -> str:
    bind_line = f"    bind {bind}\n" if bind else ""
    return (
        f".:{PORT} {{\n"
        f"{bind_line}"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        f"        from_yaml {REFERENCE_YAML}\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "        ttl 30\n"
        "    }\n"
        "}\n"
    )


@dataclass(frozen=True)
class OwnAddress:
    id: str
    addresses: tuple[str, ...]
    bind: str | None
    ns_target: str
    glue: tuple[str, ...]
    ns_dns_a: str


KUBE_DNS = "kube-dns.kube-system.svc.cluster.local."
NS_DNS = "ns.dns.cluster.local."

CASES = [
    OwnAddress(
        "inside-the-cluster-10.244.0.2",
        ("10.244.0.2",),
        None,
        KUBE_DNS,
        (f"{KUBE_DNS} 30 IN A 10.96.0.10",),
        "10.96.0.10",
    ),
    OwnAddress(
        "outside-192.0.2.7",
        ("192.0.2.7",),
        None,
        NS_DNS,
        (f"{NS_DNS} 30 IN A 192.0.2.7",),
        "192.0.2.7",
    ),
    OwnAddress(
        "bound-to-192.0.2.7-on-a-host-that-also-has-10.244.0.2",
        ("10.244.0.2", "192.0.2.7"),
        "192.0.2.7 127.0.0.1",
        NS_DNS,
        (f"{NS_DNS} 30 IN A 192.0.2.7",),
        "192.0.2.7",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_apex_ns_and_ns_dns(case: OwnAddress, tmp_path: Path) -> None:
    async with namespace_with(*case.addresses) as ns, cli_in(ns, corefile(case.bind), tmp_path):
        out = await dig_in(ns, "cluster.local", "NS")
        assert out.status == "NOERROR" and out.flags == {"qr", "aa", "rd"}, out
        assert out.answer == records(f"cluster.local. 30 IN NS {case.ns_target}")
        assert out.additional == records(*case.glue)
        assert out.authority == ()

        out = await dig_in(ns, "ns.dns.cluster.local", "A")
        assert out.status == "NOERROR" and out.flags == {"qr", "aa", "rd"}, out
        assert out.answer == records(f"{NS_DNS} 30 IN A {case.ns_dns_a}")

        out = await dig_in(ns, "+tcp", "ns.dns.cluster.local", "AAAA")  # IPv4 only: NODATA
        assert out.status == "NOERROR" and out.answer == ()
        assert out.authority == records(soa())

        # the rest of the zone does not depend on the address
        out = await dig_in(ns, "kube-dns.kube-system.svc.cluster.local", "A")
        assert out.answer == records(f"{KUBE_DNS} 30 IN A 10.96.0.10")
