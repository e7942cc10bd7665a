"""Amplification (issue 8, reliability.md E8-E10, W17, R4): no UDP reply is larger than the
client's buffer (512 bytes without EDNS), nor than the server's own cap whatever a spoofed query
advertises; ANY gets a minimal answer; the reply/query ratio stays within the figures that
docs/reliability.md guarantees. TCP still carries the full answer."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest
import yaml
from dnslib import DNSRecord

from clusterdns.server.responder import MAX_UDP_REPLY
from tests.dnstest import running_server, tcp_exchange, udp_exchange
from tests.reliability.support import BigRecord, opt, query

SMALLEST_QUERY: Final = 17
"""Header (12) + root name (1) + type and class (4): the smallest query that gets an answer."""
SMALLEST_EDNS_QUERY: Final = SMALLEST_QUERY + 11
"""The same with an empty OPT record (11): the smallest query that can advertise a buffer."""
RATIO_NO_EDNS: Final = 512 / SMALLEST_QUERY  # 30.1
RATIO_EDNS: Final = MAX_UDP_REPLY / SMALLEST_EDNS_QUERY  # 146.3
RATIO_BUFSIZE_1232: Final = 1232 / SMALLEST_EDNS_QUERY  # 44.0

ENDPOINTS: Final = 400
HEADLESS: Final = "big.amp.svc.cluster.local."


def big_cluster(directory: Path) -> Path:
    """A namespace with a headless Service of ENDPOINTS ready endpoints and a named port."""
    endpoints = [
        {
            "addresses": [f"10.250.{i // 250}.{i % 250 + 1}"],
            "conditions": {"ready": True},
            "hostname": f"pod-{i}",
        }
        for i in range(ENDPOINTS)
    ]
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "amp"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "big", "namespace": "amp"},
            "spec": {
                "clusterIP": "None",
                "clusterIPs": ["None"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "big-1",
                "namespace": "amp",
                "labels": {"kubernetes.io/service-name": "big"},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    ]
    path = directory / "big.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def corefile(cluster: Path, *extra: str) -> str:
    lines = "".join(f"    {line}\n" for line in extra)
    return f""".:0 {{
{lines}    kubernetes cluster.local {{
        from_yaml {cluster}
    }}
    whoami
}}
"""


SIZES: Final = (None, 0, 1, 511, 512, 513, 1000, 1232, 1400, 2048, 4095, 4096, 4097, 8192, 65535)


def limit_for(advertised: int | None, bufsize: int | None = None) -> int:
    if advertised is None:
        return 512
    size = advertised if bufsize is None else min(advertised, bufsize)
    return max(512, min(size, MAX_UDP_REPLY))


@pytest.mark.parametrize("qtype", [1, 33, 255], ids=["A", "SRV", "ANY"])
async def test_udp_replies_never_exceed_the_advertised_buffer(tmp_path: Path, qtype: int) -> None:
    cluster = big_cluster(tmp_path)
    async with running_server(corefile(cluster)) as server:
        (full,) = await tcp_exchange(server.port(), query(HEADLESS, qtype))
        for size in SIZES:
            data = query(HEADLESS, qtype, edns=None if size is None else opt(size))
            raw = await udp_exchange(server.port(), data)
            reply = DNSRecord.parse(raw)
            assert len(raw) <= limit_for(size), (size, len(raw))
            if len(full) + (0 if size is None else 11) > limit_for(size):
                assert reply.header.tc, size  # the client learns to retry over TCP
    if qtype != 255:
        whole = DNSRecord.parse(full)
        assert not whole.header.tc and len(whole.rr) == ENDPOINTS  # TCP carries everything


async def test_bufsize_1232_caps_every_udp_reply(tmp_path: Path) -> None:
    cluster = big_cluster(tmp_path)
    async with running_server(corefile(cluster, "bufsize 1232")) as server:
        for size in SIZES:
            for qtype in (1, 33):
                data = query(HEADLESS, qtype, edns=None if size is None else opt(size))
                raw = await udp_exchange(server.port(), data)
                assert len(raw) <= limit_for(size, 1232), (size, qtype, len(raw))
                assert len(raw) / len(data) <= RATIO_BUFSIZE_1232


async def test_any_is_minimal_with_the_any_plugin(tmp_path: Path) -> None:
    cluster = big_cluster(tmp_path)
    async with running_server(corefile(cluster, "any")) as server:
        for size in SIZES:
            data = query(HEADLESS, 255, edns=None if size is None else opt(size))
            for raw in (
                await udp_exchange(server.port(), data),
                (await tcp_exchange(server.port(), data))[0],
            ):
                reply = DNSRecord.parse(raw)
                assert [r.rtype for r in reply.rr] == [13] and not reply.header.tc
                assert len(raw) < len(data) + 60  # one HINFO record: no amplification


@pytest.mark.parametrize("size", [None, 512, 1232, 4096, 65535])
async def test_the_documented_ratio_holds_for_the_smallest_queries(size: int | None) -> None:
    # The root name, answered with as much as fits: the worst case an attacker can build.
    data = query(".", 1, edns=None if size is None else opt(size))
    assert len(data) == (SMALLEST_QUERY if size is None else SMALLEST_EDNS_QUERY)
    async with running_server(".:0 {\n    whoami\n}\n", head=BigRecord(60_000)) as server:
        raw = await udp_exchange(server.port(), data)
    ratio = len(raw) / len(data)
    assert ratio <= (RATIO_NO_EDNS if size is None else RATIO_EDNS)
    assert DNSRecord.parse(raw).header.tc


def test_documented_figures() -> None:
    assert (round(RATIO_NO_EDNS, 1), round(RATIO_EDNS, 1), round(RATIO_BUFSIZE_1232, 1)) == (
        30.1,
        146.3,
        44.0,
    )
