"""The container image: the Containerfile's promises (checked statically, since no container
engine runs here) and scripts/image-smoke, which runs the same steps on this machine — wheels, a
fresh venv without pip, a read-only ConfigMap-style config directory, a non-root user binding
port 53 in a network namespace — and answers queries with dig."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests import netns
from tests.manifests.objects import CONTAINERFILE, ROOT, by_kind, container

SMOKE = ROOT / "scripts" / "image-smoke"
SMOKE_TIMEOUT_S = 280
"""A first run builds every wheel (pip's cache helps); later runs reuse them: about 20 s."""


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_containerfile_builds_from_the_wheel_in_two_stages() -> None:
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    (arg,) = [args for word, args in steps if word == "ARG" and args.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=\S*python:3\.11-slim\S*", arg)
    runs = [args for word, args in steps if word == "RUN"]
    assert any("pip wheel" in r and "--wheel-dir /wheels" in r for r in runs)
    (install,) = [r for r in runs if "venv --without-pip /venv" in r]
    assert "--mount=type=bind,from=build,source=/wheels" in install  # no layer keeps the wheels
    assert "--no-index --find-links /wheels clusterdns" in install
    assert "setcap cap_net_bind_service=+ep" in install
    assert "pip uninstall -y pip" in install


def test_containerfile_runs_like_the_deployment_expects() -> None:
    steps = instructions()
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    words = dict(final)
    assert json.loads(words["ENTRYPOINT"]) == ["clusterdns"]
    assert json.loads(words["CMD"]) == ["-conf", "/etc/coredns/Corefile"]
    assert json.loads(words["CMD"]) == container()["args"]
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    uid = pod["securityContext"]["runAsUser"]
    assert words["USER"] == f"{uid}:{pod['securityContext']['runAsGroup']}"
    exposed = set(words["EXPOSE"].split())
    ports = {f"{p['containerPort']}/{p['protocol'].lower()}" for p in container()["ports"]}
    assert exposed == ports
    assert "PATH=/venv/bin:$PATH" in words["ENV"]
    assert "PYTHONDONTWRITEBYTECODE=1" in words["ENV"]


def smoke_unavailable() -> str | None:
    reason = netns.unavailable()
    if reason:
        return reason
    for tool in ("setpriv", "setcap", "dig", "sysctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/usr/bin/python3.11") and shutil.which("python3.11") is None:
        return "no python3.11 for the runtime venv"
    return None


@pytest.mark.skipif(smoke_unavailable() is not None, reason=str(smoke_unavailable()))
@pytest.mark.timeout(SMOKE_TIMEOUT_S + 20)
def test_image_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(SMOKE)],
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
        cwd=ROOT,
    )
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert out.rstrip().splitlines()[-1].startswith("image-smoke: OK")
    # Every way to bind port 53 that the README names was exercised, and the control failed.
    for heading in ("== 4a.", "== 4b.", "== 4c.", "== 4d. file capability"):
        assert heading in out, heading
    assert out.count("exit 1: listen 127.0.0.1:53: bind: Permission denied") == 2
    assert out.count("exit status 0 after SIGTERM") == 3
    assert out.count("kubernetes.default.svc.cluster.local A +tcp -> 10.96.0.1") == 3
