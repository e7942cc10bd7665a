"""Reloads of the real command line: SIGUSR1, and the plugin watching a ConfigMap volume.

The process is started as an operator starts it; the tests wait for its log lines (each wait is
bounded), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode

from tests.dnstest import TIMEOUT_S, http_get
from tests.plugins.reload.test_server import configmap_version
from tests.ports import free_tcp_port

EXE = [sys.executable, "-m", "clusterdns"]
WAIT_S = 30.0


class Process:
    """A running clusterdns and the lines it printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.port = 0

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT_S)
        assert raw, "the server exited:\n" + "".join(self.lines)
        text = raw.decode()
        self.lines.append(text)
        return text

    async def until(self, pattern: str) -> str:
        """Read lines until one matches `pattern` (a regular expression); return it."""
        while True:
            text = await self.line()
            if re.search(pattern, text):
                return text

    async def answer(self, name: str) -> list[str]:
        q = dns.message.make_query(name, "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=self.port, timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.NOERROR
        return sorted(rr.to_text() for rrset in r.answer for rr in rrset)


@asynccontextmanager
async def serving(conf: Path) -> AsyncIterator[Process]:
    proc = await asyncio.create_subprocess_exec(
        *EXE,
        "-conf",
        str(conf),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    p = Process(proc)
    try:
        while True:
            text = await p.line()
            m = re.match(r"^\S*:(\d+)", text)
            if m and not p.port:
                p.port = int(m.group(1))
            if text.startswith("clusterdns-"):
                await p.line()  # the second version line ends the banner
                break
        yield p
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


HOSTS = """\
.:0 {{
    bind 127.0.0.1
    reload {period}
    prometheus 127.0.0.1:{metrics}
    hosts {{
        {addr} www.example.org
    }}
}}
"""


async def scrape(port: int) -> str:
    reply = await http_get(port, "/metrics")
    status, body = reply.status, reply.body
    assert status == 200
    return body.decode()


async def test_sigusr1_reloads_an_unchanged_corefile_and_never_counts_failures(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "Corefile"
    metrics = free_tcp_port()
    conf.write_text(HOSTS.format(period="1h", metrics=metrics, addr="192.0.2.1"))
    async with serving(conf) as p:
        assert any("plugin/reload: Running configuration SHA512 = " in line for line in p.lines)
        p.proc.send_signal(signal.SIGUSR1)
        assert await p.line() == "[INFO] SIGUSR1: Reloading\n"
        assert await p.line() == "[INFO] Reloading\n"
        assert re.fullmatch(
            r"\[INFO\] plugin/reload: Running configuration SHA512 = [0-9a-f]{128}\n",
            await p.line(),
        )
        assert await p.line() == "[INFO] Reloading complete\n"
        assert await p.answer("www.example.org.") == ["192.0.2.1"]

        conf.write_text(HOSTS.format(period="1h", metrics=metrics, addr="192.0.2.1") + "}\n")
        p.proc.send_signal(signal.SIGUSR1)
        await p.until(r"^\[INFO\] SIGUSR1: Reloading$")
        assert await p.line() == "[INFO] Reloading\n"
        failed = f"{conf}:9: Unexpected '}}' because no matching opening brace"
        assert await p.line() == f"[ERROR] Restart failed: {failed}\n"
        assert (
            await p.line()
            == f"[ERROR] SIGUSR1: starting with listener file descriptors: {failed}\n"
        )
        text = await scrape(metrics)
        assert "coredns_reload_failed_total 0.0" in text
        assert "coredns_reload_version_info" not in text
        assert await p.answer("www.example.org.") == ["192.0.2.1"]


async def test_reload_plugin_follows_a_configmap_volume(tmp_path: Path) -> None:
    root = tmp_path / "coredns"
    root.mkdir()
    metrics = free_tcp_port()

    def version(stamp: str, addr: str, extra: str = "") -> None:
        text = HOSTS.format(period="2s 1s", metrics=metrics, addr=addr) + extra
        configmap_version(root, stamp, {"Corefile": text})

    version("2026_11_28_10_00_00.000000001", "192.0.2.1")
    async with serving(root / "Corefile") as p:
        assert await p.answer("www.example.org.") == ["192.0.2.1"]
        version("2026_11_28_10_01_00.000000002", "192.0.2.2")
        await p.until(r"^\[INFO\] Reloading$")
        sha = await p.line()
        assert re.fullmatch(r"\[INFO\] plugin/reload: Running configuration SHA512 = \w+\n", sha)
        assert await p.line() == "[INFO] Reloading complete\n"
        assert await p.answer("www.example.org.") == ["192.0.2.2"]
        digest = sha.split(" = ")[1].strip()
        assert f'coredns_reload_version_info{{hash="sha512",value="{digest}"}} 1.0' in (
            await scrape(metrics)
        )

        # A broken version: the old configuration keeps serving; counted; file:line logged.
        version("2026_11_28_10_02_00.000000003", "192.0.2.3", "example.net {\n    nosuch\n}\n")
        await p.until(r"^\[INFO\] Reloading$")
        error = f"{root / 'Corefile'}:10: Unknown directive 'nosuch'"
        assert await p.line() == f"[ERROR] Restart failed: {error}\n"
        assert await p.line() == (
            "[ERROR] plugin/reload: Corefile changed but reload failed: "
            f"starting with listener file descriptors: {error}\n"
        )
        assert await p.answer("www.example.org.") == ["192.0.2.2"]
        text = await scrape(metrics)
        assert "coredns_reload_failed_total 1.0" in text
        assert len(re.findall("coredns_reload_version_info{", text)) == 1
        assert digest not in text  # Q29: the failed digest replaced it

        p.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(p.proc.wait(), WAIT_S)
        assert p.proc.returncode == 0
