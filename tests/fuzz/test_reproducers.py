"""The bugs fuzzing found, reproduced on the real server (strict xfails while open, regression
tests once fixed: every one below is fixed, see `fuzz.harness.FIXED`).

Each test states the documented outcome. The hangs run the server as a separate process (a hung
event loop cannot be stopped from inside) and are bounded: the server must answer a normal query
within a few seconds of the bad input.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path
from typing import Final, cast

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import pytest
from dnslib import DNSRecord

from clusterdns.dnsutil.codec import parse_message
from tests.dnstest import running_server, udp_exchange
from tests.faults.support import cli_server

ANSWER_S: Final = 3.0

HANG_PACKET: Final = bytes.fromhex("beef0100000100000000000100000100010000050001000000000002c01c")
"""A query whose additional section holds a CNAME record whose RDATA is a compression pointer to
itself (offset 28): header(QD=1, AR=1) . A IN; . CNAME IN 0 RDLENGTH=2 c01c."""


async def answers(port: int, name: str = "example.org.") -> bool:
    q = dns.message.make_query(name, "A")
    try:
        await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=ANSWER_S)
    except dns.exception.Timeout:
        return False
    return True


async def test_a_cname_pointing_to_itself_in_a_query_does_not_hang_the_server(
    tmp_path: Path,
) -> None:
    corefile = ".:0 {\n    bind 127.0.0.1\n    whoami\n}\n"
    async with cli_server(corefile, tmp_path, args=("-quiet",), stop_timeout_s=1.0) as cli:
        assert await answers(cli.port)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", cli.port)
        )
        transport.sendto(HANG_PACKET)
        transport.close()
        assert await answers(cli.port), "one 30-byte packet stopped the server"


class _HostileUpstream(asyncio.DatagramProtocol):
    """Answers each query with its ID and question and a CNAME whose RDATA points to itself."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        end = 12
        while data[end]:
            end += 1 + data[end]
        end += 5  # the root label, type and class
        question = data[12:end]
        rdata_at = end + 2 + 10  # owner pointer, then type/class/ttl/rdlength
        answer = (
            b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 300, 2) + struct.pack("!H", 0xC000 | rdata_at)
        )
        header = data[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
        self.transport.sendto(header + question + answer, addr)


async def test_a_hostile_upstream_reply_does_not_hang_the_server(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        _HostileUpstream, local_addr=("127.0.0.1", 0)
    )
    up = transport.get_extra_info("sockname")[1]
    corefile = (
        ".:0 {\n    bind 127.0.0.1\n"
        "    template IN A cluster.local {\n"
        '        answer "{{ .Name }} 5 IN A 10.96.0.1"\n    }\n'
        f"    forward . 127.0.0.1:{up}\n}}\n"
    )
    try:
        async with cli_server(corefile, tmp_path, args=("-quiet",), stop_timeout_s=1.0) as cli:
            assert await answers(cli.port, "kubernetes.default.svc.cluster.local.")
            q = dns.message.make_query("example.com.", "A")
            with pytest.raises(dns.exception.Timeout):  # the forwarded query itself
                await dns.asyncquery.udp(q, "127.0.0.1", port=cli.port, timeout=1.0)
            assert await answers(cli.port, "kubernetes.default.svc.cluster.local."), (
                "one upstream reply stopped the server"
            )
    finally:
        transport.close()


async def test_a_label_holding_dots_is_not_read_as_several_labels() -> None:
    """Bug `label-text`: one label under the root was answered as the Service's five labels."""
    corefile = (
        ".:0 {\n    kubernetes cluster.local {\n"
        f"        from_yaml {Path(__file__).resolve().parents[1] / 'fixtures/k8s/reference.yaml'}\n"
        "    }\n    whoami\n}\n"
    )
    # One label "api.prod.svc.cluster.local" under the root: not a cluster name.
    query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x1aapi.prod.svc.cluster.local\x00"
    query += struct.pack("!HH", 1, 1)
    async with running_server(corefile) as server:
        reply = DNSRecord.parse(await udp_exchange(server.port(), query))
    owners = [tuple(bytes(x) for x in r.rname.label) for r in reply.rr]
    assert (b"api", b"prod", b"svc", b"cluster", b"local") not in owners, reply
    assert reply.header.rcode == dns.rcode.NOERROR and not reply.rr, reply  # whoami's reply
    assert tuple(bytes(x) for x in reply.ar[0].rname.label) == (b"api.prod.svc.cluster.local",)


async def test_a_label_byte_0x84_is_answered_without_a_crash() -> None:
    """Found by the responder fuzzer (a handler crash per query through whoami); fixed by
    `Request.owner`; kept as a regression test (fuzz/crashes/responder/fixed.*)."""
    query = struct.pack("!HHHHHH", 8, 0x0100, 1, 0, 0, 0) + b"\x02x\x84\x07example\x03net\x00"
    query += struct.pack("!HH", 1, 1)
    async with running_server(".:0 {\n    whoami\n}\n") as server:
        reply = dns.message.from_wire(await udp_exchange(server.port(), query))
        panics = server.config.process.metrics.panics.get()
    assert panics == 0 and reply.rcode() == dns.rcode.NOERROR, (panics, reply)


async def test_template_owner_keeps_non_ascii_label_bytes() -> None:
    """Bug `text-escapes`: the owner came back IDNA-encoded (`xn--vdab.example.org`)."""
    corefile = (
        ".:0 {\n    template IN A example.org {\n"
        '        answer "{{ .Name }} 60 IN A 192.0.2.1"\n    }\n}\n'
    )
    query = struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x02\xff\xfe\x07example\x03org\x00"
    query += struct.pack("!HH", 1, 1)
    async with running_server(corefile) as server:
        reply = dns.message.from_wire(await udp_exchange(server.port(), query))
    assert reply.answer, reply
    assert reply.answer[0].name.labels == (b"\xff\xfe", b"example", b"org", b""), reply


async def test_validate_reports_a_nul_byte_in_a_path_with_file_and_line(tmp_path: Path) -> None:
    """Bug `corefile-nul`: `-validate` printed a ValueError traceback."""
    conf = tmp_path / "Corefile"
    conf.write_bytes(b"example.org {\n    hosts /etc/\x00hosts\n}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clusterdns",
        "-validate",
        "-conf",
        str(conf),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "Traceback" not in err.decode() and f"{conf}:2: hosts: " in err.decode(), err.decode()
    assert "NUL byte" in err.decode(), err.decode()


class _NsecUpstream(asyncio.DatagramProtocol):
    """Answers each query with an NSEC record whose type bitmap is empty."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        end = 12
        while data[end]:
            end += 1 + data[end]
        end += 5
        nsec = b"\xc0\x0c" + struct.pack("!HHIH", 47, 1, 300, 1) + b"\x00"  # root, no bitmap
        header = data[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
        self.transport.sendto(header + data[12:end] + nsec, addr)


async def test_an_upstream_reply_that_does_not_encode_again_is_servfail_not_silence() -> None:
    """Bug `relay-repack`: the writer failed after it was marked written, so nothing was sent.

    dnslib cannot encode an NSEC with an empty type bitmap, so the relayed reply cannot be
    written: the client gets SERVFAIL (deviation D37; CoreDNS relays the record), every time,
    and it is not a crash (no panic counted).
    """
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_NsecUpstream, local_addr=("127.0.0.1", 0))
    up = transport.get_extra_info("sockname")[1]
    try:
        corefile = f".:0 {{\n    errors\n    cache 30\n    forward . 127.0.0.1:{up}\n}}\n"
        async with running_server(corefile) as server:
            query = DNSRecord.question("example.com.", "NSEC")
            replies = [
                dns.message.from_wire(await udp_exchange(server.port(), bytes(query.pack())))
                for _ in range(2)  # the second from the cache, which stored the reply
            ]
            panics = server.config.process.metrics.panics.get()
    finally:
        transport.close()
    assert panics == 0, panics
    for reply in replies:
        assert reply.rcode() == dns.rcode.SERVFAIL, reply
        assert reply.question[0].name == dns.name.from_text("example.com."), reply


@pytest.mark.parametrize("first", [b".0-244-9-9", b"\x80", b"\xff"], ids=["dot", "0x80", "0xff"])
async def test_kubernetes_answers_odd_pod_labels_with_the_question_bytes(first: bytes) -> None:
    """Bug `k8s-text-owner`: owners were rebuilt from the question's text (0xff came back as
    `xn--wda`, 0x80 crashed the handler, a label holding a dot moved the labels).

    The label left of a pod address is ignored (as in CoreDNS), so each name is the pod
    `0-244-9-9.prod`, answered with the question's own bytes as the owner.
    """
    corefile = (
        ".:0 {\n    kubernetes cluster.local {\n"
        f"        from_yaml {Path(__file__).resolve().parents[1] / 'fixtures/k8s/reference.yaml'}\n"
        "        pods insecure\n    }\n}\n"
    )
    labels = (first, b"0-244-9-9", b"prod", b"pod", b"cluster", b"local")
    query = struct.pack("!HHHHHH", 10, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(x)]) + x for x in labels) + b"\x00" + struct.pack("!HH", 1, 1)
    async with running_server(corefile) as server:
        reply = parse_message(await udp_exchange(server.port(), query))
        panics = server.config.process.metrics.panics.get()
    assert panics == 0, panics
    assert reply.header.rcode == dns.rcode.NOERROR and len(reply.rr) == 1, reply
    assert tuple(bytes(x) for x in reply.rr[0].rname.label) == labels, reply
    assert str(reply.rr[0].rdata) == "0.244.9.9", reply
