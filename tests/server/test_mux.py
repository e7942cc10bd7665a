r"""Mux: the longest matching server-block zone, read on label boundaries of the escaped text.

`Request.name` writes a dot inside a label as `\.`, so `evil\.cluster.local.` is the label
`evil.cluster` under `local.`: it must never be routed to a `cluster.local` block (CoreDNS walks
the name with the escape-aware `dns.NextLabel`).
"""

from __future__ import annotations

import pytest

from clusterdns.server.mux import Mux
from tests.dnstest import build_config

COREFILE = """\
cluster.local:53 {
    whoami
}
local:53 {
    whoami
}
example.org:53 {
    whoami
}
.:53 {
    whoami
}
"""


@pytest.fixture(scope="module")
def mux() -> Mux:
    config = build_config(COREFILE)
    return Mux(next(iter(config.listeners.values())))


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("cluster.local.", "cluster.local."),
        ("api.prod.svc.cluster.local.", "cluster.local."),
        ("local.", "local."),
        ("x.local.", "local."),
        ("example.org.", "example.org."),
        ("com.", "."),
        (".", "."),
        # escaped text
        (r"evil\.cluster.local.", "local."),
        (r"a.evil\.cluster.local.", "local."),
        (r"cluster\.local.", "."),
        (r"a\\.cluster.local.", "cluster.local."),  # the label `a\`
        (r"a\\\.cluster.local.", "local."),  # the label `a\.cluster`
        (r"a\.b.cluster.local.", "cluster.local."),
        (r"x.example\.org.", "."),
        (r"\255\000.example.org.", "example.org."),
        (r"\..", "."),  # the one label `.`
    ],
)
def test_route_picks_the_longest_zone_on_label_boundaries(mux: Mux, name: str, zone: str) -> None:
    routed = mux.route(name)
    assert routed is not None and routed[0] == zone


def test_without_a_root_block_an_escaped_name_outside_every_zone_is_refused() -> None:
    config = build_config("cluster.local:53 {\n    whoami\n}\n")
    mux = Mux(next(iter(config.listeners.values())))
    assert mux.route("a.cluster.local.") is not None
    assert mux.route(r"evil\.cluster.local.") is None
    assert mux.route(r"cluster\.local.") is None
    assert mux.route("org.") is None
