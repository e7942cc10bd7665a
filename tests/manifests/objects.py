"""The shipped manifests, loaded once: every YAML document of manifests/, by kind."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parents[2]
MANIFESTS: Final = ROOT / "manifests"
DEPLOY: Final = MANIFESTS / "clusterdns.yaml"
MONITORING: Final = MANIFESTS / "monitoring"
DASHBOARD: Final = MONITORING / "grafana-dashboard.json"
RULES: Final = MONITORING / "prometheusrule.yaml"
CONTAINERFILE: Final = ROOT / "Containerfile"

Obj = dict[str, Any]


def documents(path: Path) -> list[Obj]:
    """The non-empty YAML documents of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> Obj:
    """The one object of `kind` in manifests/clusterdns.yaml."""
    found = [doc for doc in documents(DEPLOY) if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def corefile() -> str:
    """The Corefile of the ConfigMap."""
    text = by_kind("ConfigMap")["data"]["Corefile"]
    assert isinstance(text, str)
    return text


def container() -> Obj:
    """The Deployment's one container."""
    containers = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: Obj = containers[0]
    return found


def project_version() -> str:
    """`version` of pyproject.toml."""
    m = re.search(r'(?m)^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert m is not None
    return m.group(1)
