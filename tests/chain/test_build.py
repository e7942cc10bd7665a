"""Setup errors reach `-validate` as CorefileErrors with file:line, whatever the plugin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterdns.chain.build import build
from clusterdns.chain.handler import PluginFactory
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive, parse
from clusterdns.errors import CorefileErrors
from clusterdns.plugins import SETUP
from tests.dnstest import new_process


@dataclass(frozen=True, kw_only=True)
class NulCase:
    body: str
    """The plugin's lines inside `example.org:1053 { ... }` (the Corefile's line 2 on)."""
    error: str

    def id(self) -> str:
        return self.body.split()[0] + " " + self.error.split(": ", 1)[0]


NUL = "/etc/\0x"
SHOWN = "'/etc/\\x00x'"

# Every argument that names a file: a NUL byte is an error at its own line.
NUL_CASES = [
    NulCase(body=f"hosts {NUL}", error=f"Corefile:2: hosts: invalid file name {SHOWN}"),
    NulCase(body=f"hosts {NUL} example.org", error=f"Corefile:2: hosts: invalid file name {SHOWN}"),
    NulCase(
        body=f"loadbalance weighted {NUL}",
        error=f"Corefile:2: loadbalance: invalid file name {SHOWN}",
    ),
    NulCase(
        body=f"loadbalance weighted {NUL} {{\n        reload 10s\n    }}",
        error=f"Corefile:2: loadbalance: invalid file name {SHOWN}",
    ),
    NulCase(
        body=f"kubernetes cluster.local {{\n        kubeconfig {NUL} ctx\n    }}",
        error=f"Corefile:3: kubernetes: invalid file name {SHOWN}",
    ),
    NulCase(
        body=f"kubernetes cluster.local {{\n        from_yaml {NUL}\n    }}",
        error=f"Corefile:3: kubernetes: invalid file name {SHOWN}",
    ),
    NulCase(
        body="kubernetes cluster.local {\n        endpoint https://10.0.0.1\n"
        f"        tls /etc/a /etc/b {NUL}\n    }}",
        error=f"Corefile:4: kubernetes: invalid file name {SHOWN}",
    ),
    # forward's `tls` files are opened at setup: the build reports the OS layer's ValueError.
    NulCase(
        body=f"forward . 127.0.0.1 {{\n        tls {NUL}\n    }}",
        error=f"Corefile:3: forward: invalid file name {SHOWN}",
    ),
    NulCase(
        body=f"forward . {NUL}",
        error='Corefile:2: forward: not an IP address or file: "/etc/\0x"',
    ),
]


@pytest.mark.parametrize("case", NUL_CASES, ids=NulCase.id)
@pytest.mark.parametrize("validate_only", [True, False])
def test_a_nul_byte_in_a_file_name_is_a_corefile_error(case: NulCase, validate_only: bool) -> None:
    text = "example.org:1053 {\n    " + case.body + "\n    whoami\n}\n"
    process = new_process()
    process.validate_only = validate_only
    with pytest.raises(CorefileErrors) as exc:
        build(parse(text, "Corefile", DIRECTIVES), specs=SETUP, dns_port=53, process=process)
    assert len(exc.value.errors) == 1
    got = str(exc.value.errors[0])
    assert got.startswith(case.error), got
    if "invalid file name" in case.error:
        assert got.endswith(": it holds a NUL byte"), got


def _raises_value_error(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    raise ValueError("not about a file")


def test_any_setup_that_trips_on_a_nul_byte_is_reported_at_the_argument() -> None:
    text = "example.org:1053 {\n    whoami {\n        x\n        y /a\0b\n    }\n}\n"
    specs = {"whoami": PluginSpec("whoami", _opens_its_argument_in_block)}
    with pytest.raises(CorefileErrors) as exc:
        build(parse(text, "Corefile", DIRECTIVES), specs=specs, dns_port=53, process=new_process())
    assert str(exc.value) == "Corefile:4: whoami: invalid file name '/a\\x00b': it holds a NUL byte"


def _opens_its_argument_in_block(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    with open(lines[0].options[1].values[0], "rb"):
        pass
    raise AssertionError("unreachable: the name holds a NUL byte")


def test_another_value_error_of_a_setup_is_not_taken_for_a_nul_byte() -> None:
    text = "example.org:1053 {\n    whoami /a\0b\n}\n"
    specs = {"whoami": PluginSpec("whoami", _raises_value_error)}
    with pytest.raises(ValueError, match="not about a file"):
        build(parse(text, "Corefile", DIRECTIVES), specs=specs, dns_port=53, process=new_process())


def test_the_path_helper_passes_ordinary_names(tmp_path: Path) -> None:
    text = f"example.org:1053 {{\n    hosts {tmp_path / 'hosts'}\n}}\n"
    (tmp_path / "hosts").write_text("192.0.2.1 a.example.org\n")
    config = build(
        parse(text, "Corefile", DIRECTIVES), specs=SETUP, dns_port=53, process=new_process()
    )
    assert config.blocks[0].plugins == ("hosts",)
