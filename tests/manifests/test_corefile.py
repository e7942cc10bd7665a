"""The Corefile shipped in the ConfigMap is parsed and set up by the real server (`-validate`
through the CLI), inside a network namespace whose /etc/resolv.conf names a loopback stub, as
`forward . /etc/resolv.conf` reads it in a pod with `dnsPolicy: Default`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import netns
from tests.dnstest import build_config
from tests.manifests.objects import ROOT, corefile

TIMEOUT_S = 60.0


def test_sets_up_in_process() -> None:
    config = build_config(corefile())
    (block,) = config.blocks
    assert block.head is not None


@pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
async def test_validates_through_the_cli_in_a_namespace(tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(corefile())
    async with netns.network_namespace() as ns:
        stub = await ns.spawn(
            sys.executable, "-m", "tests.upstream", "--host", "127.0.0.1", "--port", "53", cwd=ROOT
        )
        await netns.read_line(stub, lambda line: line.startswith("listening on"))
        done = await ns.run(
            sys.executable, "-m", "clusterdns", "-conf", str(conf), "-validate", cwd=ROOT
        )
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, f"{conf}: OK", "")

        # The same check fails loudly on a broken edit, naming the file and line.
        broken = corefile().replace("max_concurrent 1000", "max_concurrent many")
        line = broken.splitlines().index("       max_concurrent many") + 1
        conf.write_text(broken)
        done = await ns.run(
            sys.executable, "-m", "clusterdns", "-conf", str(conf), "-validate", cwd=ROOT
        )
        assert done.returncode == 1
        assert done.stderr.startswith(f"{conf}:{line}: forward: "), done.stderr
