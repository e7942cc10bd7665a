"""The kubeadm line `forward . /etc/resolv.conf`, run by the real CLI inside a network namespace.

The namespace's /etc/resolv.conf says `nameserver 127.0.0.1`, where a stub upstream
(tests/upstream.py run as a script) listens on port 53; nothing can leave the machine.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests import netns
from tests.upstream import DEFAULT_RECORDS

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 60.0

pytestmark = pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))


async def test_resolv_conf_forwarding_in_a_namespace(tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(".:0 {\n    errors\n    forward . /etc/resolv.conf\n}\n")
    async with netns.network_namespace() as ns:
        assert ns.resolv_conf.read_text() == "nameserver 127.0.0.1\n"
        stub = await ns.spawn(
            sys.executable, "-m", "tests.upstream", "--host", "127.0.0.1", "--port", "53", cwd=ROOT
        )
        ready = await netns.read_line(stub, lambda line: line.startswith("listening on"))
        assert ready == "listening on 127.0.0.1:53"

        server = await ns.spawn(sys.executable, "-m", "clusterdns", "-conf", str(conf), cwd=ROOT)
        seen: list[str] = []
        await netns.read_line(
            server, lambda line: line.startswith("clusterdns-"), timeout_s=TIMEOUT_S, seen=seen
        )
        port = next(int(m.group(1)) for line in seen if (m := re.match(r"^\S*:(\d+)", line)))

        def dig(*args: str) -> list[str]:
            return ["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=5", *args]

        out = await ns.run(*dig("db.example.com", "A"), timeout_s=TIMEOUT_S)
        assert out.returncode == 0, out.stderr
        assert "status: NOERROR" in out.stdout and "flags: qr rd ra;" in out.stdout
        assert re.search(r"db\.example\.com\.\s+300\s+IN\s+A\s+192\.0\.2\.50", out.stdout)

        out = await ns.run(*dig("nosuch.example", "A", "+tcp"), timeout_s=TIMEOUT_S)
        assert "status: NXDOMAIN" in out.stdout and "(TCP)" in out.stdout

        # The namespace's own resolver is the stub too: the host's resolv.conf is not in play.
        out = await ns.run("dig", "+tries=1", "+time=5", "example.com", "A", timeout_s=TIMEOUT_S)
        assert "93.184.215.14" in out.stdout and "SERVER: 127.0.0.1#53" in out.stdout
    assert DEFAULT_RECORDS[0].startswith("db.example.com.")
    assert not ns.etc.exists()
