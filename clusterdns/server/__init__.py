"""Sockets and lifecycle only: listeners, the responder in front of the chains, start and stop.

Nothing here builds a DNS record; replies come from plugins (through the chain) or are the fixed
error replies the server writes itself (spec §4.3, §4.5).
"""
