"""Network namespaces for tests that must read a real /etc/resolv.conf without leaving the machine.

`network_namespace()` creates a namespace with a unique name and only `lo` (up), writes
`/etc/netns/NAME/resolv.conf` (which `ip netns exec` bind-mounts over /etc/resolv.conf for the
commands it runs), and on exit — also after a failure — kills the processes it started, deletes
the namespace and removes /etc/netns/NAME. Inside, 127.0.0.1:53 is free and nothing can route off
the machine, so `forward . /etc/resolv.conf` reaches only a stub started there:

    async with network_namespace() as ns:
        stub = await ns.spawn(sys.executable, "-m", "tests.upstream", "--port", "53", cwd=ROOT)
        await read_line(stub, lambda line: line.startswith("listening"))
        result = await ns.run("dig", "@127.0.0.1", "example.com")

Needs root and iproute2; `unavailable()` says why not, for `pytest.mark.skipif`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

NETNS_ETC: Final = Path("/etc/netns")
COMMAND_TIMEOUT_S: Final = 30.0
KILL_TIMEOUT_S: Final = 10.0


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if not Path("/etc/resolv.conf").exists():
        return "/etc/resolv.conf is missing, so `ip netns exec` cannot mount over it"
    return None


@dataclass(frozen=True)
class Completed:
    """A finished command."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class NetNS:
    """A network namespace created by `network_namespace()`."""

    name: str
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def etc(self) -> Path:
        """The directory whose files `ip netns exec` mounts over /etc."""
        return NETNS_ETC / self.name

    @property
    def resolv_conf(self) -> Path:
        """The resolv.conf commands inside the namespace see as /etc/resolv.conf."""
        return self.etc / "resolv.conf"

    def argv(self, *command: str) -> list[str]:
        """`command` wrapped to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    async def run(
        self, *command: str, timeout_s: float = COMMAND_TIMEOUT_S, cwd: Path | None = None
    ) -> Completed:
        """Run `command` inside the namespace and wait for it (killed after `timeout_s`)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
        )
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await proc.communicate()
        except TimeoutError:
            await _kill(proc)
            raise
        assert proc.returncode is not None
        return Completed(
            proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def spawn(
        self, *command: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        """Start `command` inside the namespace (stdout and stderr piped); killed on exit."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
        self.processes.append(proc)
        return proc


async def read_line(
    proc: asyncio.subprocess.Process,
    predicate: Callable[[str], bool],
    *,
    timeout_s: float = COMMAND_TIMEOUT_S,
    seen: list[str] | None = None,
) -> str:
    """Read `proc`'s stdout until a line satisfies `predicate`; return that line.

    Lines read on the way are appended to `seen`.

    Raises:
        EOFError: the process closed its output first (its stderr is in the message).
        TimeoutError: no such line within `timeout_s`.
    """
    assert proc.stdout is not None
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                err = b""
                if proc.stderr is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(KILL_TIMEOUT_S):
                            err = await proc.stderr.read()
                raise EOFError(f"process exited before the expected line: {err.decode()!r}")
            line = raw.decode(errors="replace").rstrip("\n")
            if seen is not None:
                seen.append(line)
            if predicate(line):
                return line


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_TIMEOUT_S):
                await proc.wait()


async def _ip(*args: str, check: bool = True) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(COMMAND_TIMEOUT_S):
        _, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise OSError(f"ip {' '.join(args)} failed: {err.decode().strip()}")


@contextlib.asynccontextmanager
async def network_namespace(
    *, prefix: str = "cdns", nameservers: Sequence[str] = ("127.0.0.1",)
) -> AsyncIterator[NetNS]:
    """A fresh namespace with `lo` up and a resolv.conf listing `nameservers`; removed on exit."""
    ns = NetNS(f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}")
    created = made_etc = False
    try:
        ns.etc.mkdir(parents=True, exist_ok=False)
        made_etc = True
        ns.resolv_conf.write_text("".join(f"nameserver {addr}\n" for addr in nameservers))
        await _ip("netns", "add", ns.name)
        created = True
        await _ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        for proc in ns.processes:
            await _kill(proc)
        if created:
            await _ip("netns", "delete", ns.name, check=False)
        if made_etc:
            shutil.rmtree(ns.etc, ignore_errors=True)
