"""bench/k8s_scale.py still runs: a tiny cluster, the table printed (no timing is asserted)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from tests.e2e.support import ROOT

BENCH = ROOT / "bench" / "k8s_scale.py"


async def test_scale_benchmark_completes_on_a_tiny_cluster() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH),
        "--services",
        "50",
        "--endpoints-per-slice",
        "3",
        "--namespaces",
        "5",
        "--changes",
        "10",
        "--budget",
        "90",
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: the benchmark and both its children
    )
    try:
        async with asyncio.timeout(110):
            out_b, err_b = await proc.communicate()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "50 services, 150 endpoints in 50 EndpointSlices" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("figure"))
    rows = [line.split("  ")[0] for line in lines[header + 2 : header + 6]]
    assert rows == [
        "first sync (start -> /ready 200)",
        "RSS after sync",
        "change -> answer p50",
        "change -> answer p99",
    ], out
    for line in lines[header + 2 : header + 6]:
        assert line.split()[-1] in ("pass", "FAIL", "-"), line
