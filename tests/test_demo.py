"""README command 1: the demo Corefile answers exactly what the README shows.

Corefile.example forwards to /etc/resolv.conf, so it runs inside a network namespace whose
resolv.conf points at a loopback stub there: nothing leaves the machine.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.netns import network_namespace, read_line, unavailable

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_examples() -> list[tuple[str, list[str]]]:
    """(dig arguments, expected answer lines) for every `$ dig ... -p 1053` line of the README."""
    section = README[README.index("## Quick start") : README.index("## Running the tests")]
    out: list[tuple[str, list[str]]] = []
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("$ dig @127.0.0.1 -p 1053 "):
            answers = []
            for follow in lines[i + 1 :]:
                if follow.startswith("$") or follow.startswith("```"):
                    break
                answers.append(follow)
            out.append((line[len("$ dig @127.0.0.1 -p 1053 ") :], answers))
    return out


def normalise(lines: list[str]) -> list[str]:
    return sorted(re.sub(r"\s+", " ", line.strip()) for line in lines if line.strip())


async def test_demo_answers_what_the_readme_shows() -> None:
    reason = unavailable()
    if reason:
        pytest.fail(f"network namespaces are required for this test: {reason}")
    examples = readme_examples()
    assert len(examples) >= 6
    async with network_namespace(prefix="demo") as ns:
        stub = await ns.spawn(
            sys.executable, "-m", "tests.upstream", "--host", "127.0.0.1", "--port", "53", cwd=ROOT
        )
        await read_line(stub, lambda line: "listening on" in line, timeout_s=30)
        server = await ns.spawn(
            sys.executable, "-m", "clusterdns", "-conf", "Corefile.example", cwd=ROOT
        )
        await read_line(server, lambda line: line.startswith("clusterdns-"), timeout_s=60)
        for args, want in examples:
            done = await ns.run(
                "dig",
                "@127.0.0.1",
                "-p",
                "1053",
                *args.split(),
                "+tries=1",
                "+time=5",
                timeout_s=30,
            )
            assert done.returncode == 0, done.stderr
            got = [line for line in done.stdout.splitlines() if line and not line.startswith(";")]
            assert normalise(got) == normalise(want), f"dig {args}"
        # A name outside the cluster goes through forward to the namespace's resolv.conf stub.
        done = await ns.run(
            "dig", "@127.0.0.1", "-p", "1053", "example.com", "+noall", "+answer", timeout_s=30
        )
        assert normalise(done.stdout.splitlines()) == ["example.com. 30 IN A 93.184.215.14"]
