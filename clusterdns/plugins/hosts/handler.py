"""The `hosts` handler: answer A, AAAA and PTR from a HostsFile, or pass the query on.

It never reads the file itself (HostsFile does) and never writes a failure reply: SERVFAIL for an
unknown name is returned for the server to write.
"""

from __future__ import annotations

from typing import ClassVar, Final

from dnslib import AAAA, PTR, RR, A

from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import is_subdomain
from clusterdns.plugins.hosts.config import HostsConfig
from clusterdns.plugins.hosts.hostsfile import HostsFile, address_from_reverse

NAME: Final = "hosts"


class Hosts:
    """Serve names from a hosts file and inline entries."""

    name: ClassVar[str] = NAME

    def __init__(self, config: HostsConfig, hosts: HostsFile, nxt: Handler | None) -> None:
        self.config = config
        self.hosts = hosts
        self.next = nxt

    def reload_if_changed(self) -> bool:
        """Re-read the hosts file now if it changed (what the reload loop does every tick)."""
        return self.hosts.reload_if_changed()

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Answer from the entries, pass on, or return SERVFAIL for an unknown name."""
        cfg = self.config
        name = req.name
        qtype = req.qtype
        # PTR is answered for any reverse name with an entry, whatever the zones.
        if qtype != rc.PTR and not any(is_subdomain(name, z) for z in cfg.zones):
            return await next_or_failure(NAME, self.next, req, w)
        answers: list[RR] = []
        owner = req.owner  # the question's own bytes: text would re-encode unusual labels
        if qtype == rc.PTR:
            addr = address_from_reverse(name)
            names = self.hosts.names(addr) if addr is not None else ()
            if not names:
                return await next_or_failure(NAME, self.next, req, w)
            answers = [RR(owner, rc.PTR, rdata=PTR(n), ttl=cfg.ttl_s) for n in names]
        elif qtype == rc.A:
            answers = [
                RR(owner, rc.A, rdata=A(str(ip)), ttl=cfg.ttl_s) for ip in self.hosts.v4(name)
            ]
        elif qtype == rc.AAAA:
            answers = [
                RR(owner, rc.AAAA, rdata=AAAA(str(ip)), ttl=cfg.ttl_s) for ip in self.hosts.v6(name)
            ]
        elif cfg.fallthrough_unsupported and cfg.fallthrough.through(name):
            return await next_or_failure(NAME, self.next, req, w)
        if not answers and not self.hosts.exists(name):
            if cfg.fallthrough.through(name):
                return await next_or_failure(NAME, self.next, req, w)
            # No SOA to build an NXDOMAIN from: fail, as CoreDNS does since 1.6.1.
            return rc.SERVFAIL
        reply = req.reply(aa=True)
        for rr in answers:
            reply.add_answer(rr)
        w.write(reply, NAME)
        return rc.NOERROR
