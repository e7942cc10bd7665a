"""Shared DNS helpers (CoreDNS plugin/pkg): names, zones, durations, EDNS, wire checks, replies."""
