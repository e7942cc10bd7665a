"""Shared DNS helpers (CoreDNS plugin/pkg): names, zones, durations, EDNS, wire checks, replies."""

from clusterdns.dnsutil import dnslib_fields

dnslib_fields.install()
