"""Make `rrl` a known directive for these tests until `chain/order.py` lists it.

`rrl` belongs right before `acl` in ORDER (coredns/rrl's plugin.cfg.yaml: landmark acl, before).
Once chain/order.py has it, this fixture does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tests.dnstest
from clusterdns.chain import build as build_module
from clusterdns.chain.order import DIRECTIVES, ORDER


@pytest.fixture(autouse=True)
def rrl_directive(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if "rrl" not in ORDER:
        order = list(ORDER)
        order.insert(order.index("acl"), "rrl")
        monkeypatch.setattr(build_module, "ORDER", tuple(order))
        monkeypatch.setattr(tests.dnstest, "DIRECTIVES", DIRECTIVES | {"rrl"})
    yield
