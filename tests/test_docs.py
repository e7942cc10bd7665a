"""Every plugin is documented in CoreDNS's README shape, and every documented Corefile sets up."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from clusterdns.plugins import SETUP
from tests.dnstest import build_config

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("## Name", "## Description", "## Syntax", "## Examples")
FENCE = re.compile(r"~~~ corefile\n(.*?)~~~", re.S)


def docstring(name: str) -> str:
    return importlib.import_module(f"clusterdns.plugins.{name}").__doc__ or ""


def examples(text: str) -> list[str]:
    return FENCE.findall(text)


@pytest.mark.parametrize("name", sorted(SETUP))
def test_plugin_readme_sections(name: str) -> None:
    doc = docstring(name)
    assert doc.lstrip().startswith(f"# {name}\n"), (
        f"{name}: the docstring must open with '# {name}'"
    )
    positions = [doc.find(s) for s in SECTIONS]
    assert all(p >= 0 for p in positions), f"{name}: missing one of {SECTIONS}"
    assert positions == sorted(positions), f"{name}: sections out of CoreDNS order"
    assert examples(doc), f"{name}: no ~~~ corefile example"


@pytest.mark.parametrize(
    ("name", "index", "corefile"),
    [(n, i, c) for n in sorted(SETUP) for i, c in enumerate(examples(docstring(n)))],
)
def test_plugin_examples_set_up(name: str, index: int, corefile: str) -> None:
    config = build_config(corefile)
    assert config.blocks, f"{name} example {index} has no server block"
    assert any(name in b.settings.directives for b in config.blocks), (
        f"{name} example {index} does not use {name}"
    )


def test_readme_lists_every_plugin() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in SETUP:
        assert f"(docs/plugins/{name}.md)" in readme, f"README.md has no link to the {name} docs"


@pytest.mark.parametrize("path", ["Corefile.example"])
def test_shipped_corefiles_set_up(path: str) -> None:
    config = build_config((ROOT / path).read_text(), file=path)
    assert config.listeners
