"""An authoritative DNS server on loopback (dnslib) for the custom-domain tests: records are set by
the test and answered over real UDP DNS."""

from __future__ import annotations

from dnslib import CNAME, QTYPE, RR
from dnslib.server import DNSServer


class Zone:
    def __init__(self) -> None:
        self.cnames: dict[str, str] = {}

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if name in self.cnames and request.q.qtype in (QTYPE.CNAME, QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(request.q.qname, QTYPE.CNAME, rdata=CNAME(self.cnames[name] + "."), ttl=60))
        elif name not in self.cnames:
            reply.header.rcode = 3  # NXDOMAIN
        return reply


class LoopbackDNS:
    def __init__(self) -> None:
        self.zone = Zone()
        self.server = DNSServer(self.zone, address="127.0.0.1", port=0)
        self.server.start_thread()
        self.port = self.server.server.server_address[1]

    def stop(self) -> None:
        self.server.stop()
