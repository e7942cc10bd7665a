"""Smoke test of an etcd binary: good enough to back a Kubernetes 1.35 apiserver or not.

    python3 realcluster/etcd_smoke.py PATH/TO/etcd

Starts the binary on free loopback ports with a throw-away data directory, then checks, through
the v3 JSON gateway: the version is at least the minimum Kubernetes documents (3.4.29 in the
3.4 series, 3.5.11 in the 3.5 series, any 3.6 or newer), `/readyz` answers 200, a put and a
range (list) work, a watch delivers an event, and a compaction succeeds. Prints one line per
check and exits 0 only if every check passed. Standard library only.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Final

MINIMUM: Final = {(3, 4): (3, 4, 29), (3, 5): (3, 5, 11)}
START_TIMEOUT_S: Final = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def b64(text: str) -> str:
    """Base64, as the JSON gateway wants keys and values."""
    return base64.b64encode(text.encode()).decode()


class Etcd:
    """One etcd process on loopback."""

    def __init__(self, binary: str, data_dir: str) -> None:
        self.client = f"http://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [
                binary,
                "--name=smoke",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.client}",
                f"--advertise-client-urls={self.client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=smoke={peer}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def post(self, path: str, body: dict[str, Any], timeout: float = 5.0) -> Any:
        """POST a JSON body to the gateway; the decoded JSON reply."""
        req = urllib.request.Request(
            self.client + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def get_status(self, path: str) -> int:
        """The HTTP status of GET path (0 if nothing answers)."""
        try:
            with urllib.request.urlopen(self.client + path, timeout=2) as resp:
                status: int = resp.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def wait_up(self) -> bool:
        """Wait until /health answers (any etcd version has it)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.get_status("/health") == 200:
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> str:
        """Stop the process; its standard error."""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err or ""


def check_version(binary: str) -> tuple[bool, str]:
    """Check that `etcd --version` is at least the documented minimum."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", out)
    if not match:
        return False, f"cannot read the version from {out!r}"
    version = (int(match[1]), int(match[2]), int(match[3]))
    floor = MINIMUM.get(version[:2], (3, 6, 0) if version < (3, 6, 0) else version)
    shown = ".".join(map(str, version))
    if version < floor:
        return False, f"{shown} is below the minimum {'.'.join(map(str, floor))}"
    return True, shown


def check_watch(etcd: Etcd) -> tuple[bool, str]:
    """A watch on /smoke/ sees a put made after it started."""
    seen: list[str] = []

    def watch() -> None:
        req = urllib.request.Request(
            etcd.client + "/v3/watch",
            data=json.dumps(
                {"create_request": {"key": b64("/smoke/"), "range_end": b64("/smoke0")}}
            ).encode(),
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                for line in resp:
                    events = json.loads(line).get("result", {}).get("events", [])
                    for ev in events:
                        seen.append(base64.b64decode(ev["kv"]["key"]).decode())
                    if seen:
                        return
        except (OSError, ValueError):
            return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.5)
    etcd.post("/v3/kv/put", {"key": b64("/smoke/watched"), "value": b64("1")})
    thread.join(6)
    return ("/smoke/watched" in seen), f"events seen: {seen}"


def main(argv: list[str]) -> int:
    """Run every check; 0 if all passed."""
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = argv[1]
    results: list[tuple[str, bool, str]] = []
    ok, detail = check_version(binary)
    results.append(("version", ok, detail))
    with tempfile.TemporaryDirectory(prefix="etcd-smoke-") as data_dir:
        etcd = Etcd(binary, data_dir)
        try:
            if not etcd.wait_up():
                results.append(("start", False, "did not answer /health"))
            else:
                status = etcd.get_status("/readyz")
                results.append(("readyz", status == 200, f"GET /readyz -> {status}"))
                checks: list[tuple[str, Callable[[], tuple[bool, str]]]] = [
                    ("put+list", lambda: list_check(etcd)),
                    ("watch", lambda: check_watch(etcd)),
                    ("compaction", lambda: compact_check(etcd)),
                ]
                for name, fn in checks:
                    try:
                        ok, detail = fn()
                    except (OSError, ValueError, KeyError) as exc:
                        ok, detail = False, f"{type(exc).__name__}: {exc}"
                    results.append((name, ok, detail))
        finally:
            err = etcd.stop()
    for name, ok, detail in results:
        print(f"etcd smoke: {name}: {'ok' if ok else 'FAILED'} ({detail})")
    if not all(ok for _, ok, _ in results):
        tail = err.strip().splitlines()[-3:]
        if tail:
            print("etcd smoke: last stderr lines: " + " | ".join(tail))
        return 1
    return 0


def list_check(etcd: Etcd) -> tuple[bool, str]:
    """Two puts, then a prefix range returns both."""
    for i in range(2):
        etcd.post("/v3/kv/put", {"key": b64(f"/smoke/k{i}"), "value": b64(str(i))})
    reply = etcd.post("/v3/kv/range", {"key": b64("/smoke/k"), "range_end": b64("/smoke/l")})
    count = int(reply.get("count", 0))
    return count == 2, f"range count {count}"


def compact_check(etcd: Etcd) -> tuple[bool, str]:
    """Compact at the current revision."""
    rev = int(etcd.post("/v3/kv/range", {"key": b64("/smoke/k0")})["header"]["revision"])
    etcd.post("/v3/kv/compaction", {"revision": rev, "physical": True})
    return True, f"compacted at revision {rev}"


if __name__ == "__main__":
    sys.exit(main(sys.argv))
