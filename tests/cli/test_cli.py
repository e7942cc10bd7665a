"""The command line as an operator runs it: flags, exit codes, banner, signals, pid file."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode

from tests.dnstest import TIMEOUT_S

EXE = [sys.executable, "-m", "clusterdns"]


async def run(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *EXE,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def serving(
    corefile: str, tmp_path: Path, *extra: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """Start the CLI on a Corefile; wait for the banner, printed once all listeners are up."""
    conf = tmp_path / "Corefile"
    conf.write_text(corefile)
    proc = await asyncio.create_subprocess_exec(
        *EXE,
        "-conf",
        str(conf),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    port = 0
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "server exited before its banner"
            m = re.match(r"^\S*:(\d+)", line)
            if m and not port:
                port = int(m.group(1))
            if line.startswith("clusterdns-"):
                break
        yield proc, port
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_version_and_plugins() -> None:
    code, out, _ = await run("-version")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert re.fullmatch(r"clusterdns-\d+\.\d+\.\d+", lines[0])
    assert re.fullmatch(r"linux/\w+, python3\.\d+\.\d+, \S+", lines[1])
    code, out, _ = await run("--plugins")
    names = out.split()
    assert code == 0 and names == sorted(names)
    assert {"whoami", "hosts", "health", "ready", "prometheus", "errors", "log"} <= set(names)


async def test_extra_arguments_are_an_error() -> None:
    code, _, err = await run("-conf", "x", "extra")
    assert code == 2 and "extra command line arguments" in err


async def test_missing_conf_file(tmp_path: Path) -> None:
    code, _, err = await run("-conf", str(tmp_path / "nope"))
    assert code == 1
    assert err.strip() == f"{tmp_path / 'nope'}: No such file or directory"


async def test_validate_ok_and_errors() -> None:
    code, out, _ = await run(
        "-conf", "stdin", "-validate", stdin=b".:53 {\n    whoami\n    log\n}\n"
    )
    assert code == 0 and out.strip() == "stdin: OK"
    bad = b".:53 {\n    whoami extra\n    hosts {\n        ttl 0\n    }\n    bufsize 9000\n}\n"
    code, out, err = await run("-conf=stdin", "--validate", stdin=bad)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    assert lines[0].startswith("stdin:6: bufsize: ")
    assert lines[1].startswith("stdin:3: hosts: ") or lines[1].startswith("stdin:4: hosts: ")
    assert lines[2] == "stdin:2: whoami: expected no arguments, got 1"


async def test_syntax_error_names_file_and_line() -> None:
    code, _, err = await run(
        "-conf", "stdin", "-validate", stdin=b".:53 {\n    whoami\n    nosuch\n}\n"
    )
    assert code == 1 and err.strip() == "stdin:3: Unknown directive 'nosuch'"


async def test_unsupported_plugin_is_named() -> None:
    code, _, err = await run("-conf", "stdin", "-validate", stdin=b".:53 {\n    geoip x\n}\n")
    assert (
        code == 1 and err.strip() == "stdin:2: geoip: plugin 'geoip' is not supported by clusterdns"
    )


async def test_default_corefile_is_whoami_and_log(tmp_path: Path) -> None:
    code, out, _ = await run("-validate", "-dns.port", "1053", cwd=tmp_path)
    assert code == 0 and out.strip() == "default: OK"


async def test_serve_then_sigterm_exits_zero(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    async with serving(
        ".:0 {\n    bind 127.0.0.1\n    whoami\n    log\n}\n", tmp_path, "-pidfile", str(pidfile)
    ) as (proc, port):
        assert pidfile.read_text().strip() == str(proc.pid)
        q = dns.message.make_query("example.org.", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.NOERROR
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = out.decode()
        assert proc.returncode == 0
        assert "[INFO] SIGTERM: Shutting down servers then terminating" in text
        assert re.search(
            r'\[INFO\] 127\.0\.0\.1:\d+ - \d+ "A IN example\.org\. udp \d+ false 512" '
            r"NOERROR qr,aa,rd \d+ \d+\.\d+s",
            text,
        ), text
        assert not pidfile.exists()


async def test_sigusr1_reload_keeps_serving_and_rejects_broken_config(tmp_path: Path) -> None:
    async with serving(".:0 {\n    bind 127.0.0.1\n    whoami\n}\n", tmp_path) as (proc, port):
        conf = tmp_path / "Corefile"
        conf.write_text(f".:{port} {{\n    bind 127.0.0.1\n    any\n    whoami\n}}\n")
        proc.send_signal(signal.SIGUSR1)
        assert proc.stdout is not None
        while b"Reloading complete" not in await asyncio.wait_for(proc.stdout.readline(), 30):
            pass
        q = dns.message.make_query("example.org.", "ANY")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=TIMEOUT_S)
        assert r.answer and r.answer[0].rdtype == 13  # HINFO from the reloaded `any`
        conf.write_text(f".:{port} {{\n    nosuch\n}}\n")
        proc.send_signal(signal.SIGUSR1)
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if b"[ERROR] SIGUSR1:" in line:
                assert b"Unknown directive 'nosuch'" in line
                break
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=TIMEOUT_S)
        assert r.answer and r.answer[0].rdtype == 13  # the old configuration still serves


async def test_port_in_use_fails_with_one_line(tmp_path: Path) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        conf = tmp_path / "Corefile"
        conf.write_text(f".:{port} {{\n    bind 127.0.0.1\n    whoami\n}}\n")
        code, _, err = await run("-conf", str(conf))
    finally:
        holder.close()
    assert code == 1
    assert err.strip() == f"listen 127.0.0.1:{port}: bind: Address already in use"


async def test_side_listener_in_use_is_a_start_error(tmp_path: Path) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        conf = tmp_path / "Corefile"
        conf.write_text(
            f".:0 {{\n    bind 127.0.0.1\n    health 127.0.0.1:{port}\n    whoami\n}}\n"
        )
        code, _, err = await run("-conf", str(conf))
    finally:
        holder.close()
    assert code == 1
    assert err.strip() == f"cannot listen on 127.0.0.1:{port}: Address already in use"
