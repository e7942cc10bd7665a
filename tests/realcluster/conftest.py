"""Session fixtures of the realcluster tier: a real control plane, the fixture cluster, the stub
upstream. Run through `scripts/test-realcluster` (which builds the components first).

The default `pytest` run does not collect this folder: it is collected only when a path inside
it is named on the command line (`pytest tests/realcluster`, as scripts/test-realcluster does),
the same as `--ignore=tests/realcluster` in the default options would do.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from kubernetes import config

from tests.realcluster.controlplane import ControlPlane, ControlPlaneError
from tests.realcluster.objects import Fixture, create_fixture
from tests.realcluster.servers import Upstream, start_upstream

SUMMARIES: list[str] = []
"""Lines printed at the end of the run (the differential summaries)."""
HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect this folder only when the command line names it (or something inside it)."""
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        target = (base / arg.split("::")[0]).resolve()
        if target == HERE or HERE in target.parents:
            return None
    return True if collection_path.resolve().is_relative_to(HERE) else None


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager on loopback, stopped by PID at the end
    (also when the run is ended with SIGTERM, as `timeout` does: it becomes KeyboardInterrupt,
    after which pytest still tears the session fixtures down)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    cp = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    try:
        try:
            cp.start()
        except ControlPlaneError as exc:
            pytest.fail(f"control plane did not start: {exc}", pytrace=False)
        yield cp
    finally:
        cp.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Any]:
    """An official-client ApiClient with the admin kubeconfig."""
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.admin_kubeconfig)
    )
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def fixture_cluster(kube: Any, control_plane: ControlPlane) -> Fixture:
    """The reference cluster of spec §0.4 plus the additions of objects.py."""
    fx = create_fixture(kube)
    control_plane.check_alive()
    return fx


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """The stub upstream on 127.0.0.1, shared by every server of the session."""
    up = start_upstream(tmp_path_factory.mktemp("upstream"))
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARIES:
        terminalreporter.section("differential against CoreDNS")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
