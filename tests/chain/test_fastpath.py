"""The prepared-reply table: offers stored after a full-chain answer, replayed with the ID spliced,
invalidated by generation and expiry."""

from __future__ import annotations

from typing import ClassVar

from dnslib import RR, A, DNSRecord

from clusterdns.chain.fastpath import FastPath, Generations, Offer, Prepared
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil.codec import parse_message
from tests.dnstest import running_server, udp_exchange

WHOAMI = ".:0 {\n    whoami\n}\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_generation_bump_invalidates() -> None:
    gens = Generations()
    slot = gens.slot("kubernetes:cluster.local.")
    assert gens.slot("kubernetes:cluster.local.") == slot
    table = FastPath(gens)
    table.offer(b"key", b"\x00\x00tail", Offer(slot, gens.generation(slot)))
    entry = table.get(b"key")
    assert entry is not None and entry.tail == b"tail"
    gens.bump(slot)
    assert table.get(b"key") is None and len(table) == 0


def test_stale_offer_is_not_stored() -> None:
    gens = Generations()
    slot = gens.slot("z")
    offer = Offer(slot, gens.generation(slot))
    gens.bump(slot)  # the data changed while the reply was being built
    table = FastPath(gens)
    table.offer(b"key", b"\x00\x00tail", offer)
    assert table.get(b"key") is None


def test_expiry_and_capacity() -> None:
    clock = Clock()
    gens = Generations()
    slot = gens.slot("z")
    table = FastPath(gens, capacity=2, clock=clock)
    table.put(b"a", Prepared(b"1", slot, 0, expires=110.0))
    table.put(b"b", Prepared(b"2", slot, 0))
    table.put(b"c", Prepared(b"3", slot, 0))
    assert len(table) == 2 and table.get(b"a") is None  # oldest evicted
    table.put(b"d", Prepared(b"4", slot, 0, expires=110.0))
    assert table.get(b"d") is not None
    clock.now = 110.0
    assert table.get(b"d") is None


class Offering:
    """Answers A with a fixed address and offers the reply to the fast path."""

    name: ClassVar[str] = "offering"

    def __init__(self, gens: Generations) -> None:
        self.gens = gens
        self.slot = gens.slot("offering")
        self.calls = 0

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.calls += 1
        reply = req.reply(aa=True)
        address = f"10.0.0.{self.gens.generation(self.slot)}"
        reply.add_answer(RR(req.qname, 1, rdata=A(address), ttl=5))
        w.offer_fastpath(Offer(self.slot, self.gens.generation(self.slot)))
        w.write(reply, self.name)
        return 0


async def test_offered_reply_is_replayed_with_the_id_spliced() -> None:
    async with running_server(WHOAMI, fastpath=True) as server:
        plugin = Offering(server.config.process.generations)
        server.config.blocks[0].head = plugin
        q = DNSRecord.question("Fast.Example.", "A")
        first = await udp_exchange(server.port(), q.pack())
        q.header.id = (q.header.id + 1) % 65536
        second = await udp_exchange(server.port(), q.pack())
        assert plugin.calls == 1
        assert second[:2] == q.pack()[:2] and second[2:] == first[2:]
        assert str(DNSRecord.parse(second).q.qname) == "Fast.Example."
        # Another letter case is another key: the full chain answers it.
        await udp_exchange(server.port(), DNSRecord.question("fast.example.", "A").pack())
        assert plugin.calls == 2
        # A change moves the generation: the stored reply is not replayed.
        server.config.process.generations.bump(plugin.slot)
        third = DNSRecord.parse(await udp_exchange(server.port(), q.pack()))
        assert plugin.calls == 3 and str(third.rr[0].rdata) == "10.0.0.1"


async def test_blocks_with_unsafe_plugins_never_store() -> None:
    async with running_server(WHOAMI) as server:  # whoami is not replay-safe
        assert server.config.blocks[0].fastpath is False
        plugin = Offering(server.config.process.generations)
        server.config.blocks[0].head = plugin
        q = DNSRecord.question("x.example.", "A").pack()
        await udp_exchange(server.port(), q)
        await udp_exchange(server.port(), q)
        assert plugin.calls == 2


async def test_a_question_name_pointing_into_the_id_is_never_replayed() -> None:
    """Bug `id-pointer`: the name reads the ID's low byte, so each ID asks another name."""
    async with running_server(WHOAMI, fastpath=True) as server:
        plugin = Offering(server.config.process.generations)
        server.config.blocks[0].head = plugin
        # "clustal" then a pointer to offset 1, the ID's low byte: 0 ends the name there.
        query = bytes.fromhex("0100 0000 0001 0000 0000 0000") + b"\x07clustal\xc0\x01"
        query += b"\x00\x01\x00\x01"
        names = []
        for qid in (0x0100, 0x0101):
            data = qid.to_bytes(2, "big") + query[2:]
            reply = parse_message(await udp_exchange(server.port(), data))
            names.append(tuple(bytes(x) for x in reply.q.qname.label))
        assert plugin.calls == 2
        assert names == [(b"clustal",), (b"clustal", b"\x00")]
