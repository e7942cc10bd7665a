"""ORDER: the fixed execution order of plugins (CoreDNS plugin.cfg), whatever the Corefile order.

A plugin earlier in the list wraps everything after it. Every name here is a recognised
directive; those without a setup in `clusterdns.plugins` are rejected as "not supported".
"""

from typing import Final

ORDER: Final = (
    "root", "metadata", "geoip", "cancel", "proxyproto", "quic", "grpc_server", "https",
    "https3", "timeouts", "multisocket", "reload", "nsid", "bufsize", "bind", "debug", "trace",
    "ready", "health", "pprof", "shed", "prometheus", "errors", "log", "dnstap", "local", "dns64",
    "any", "chaos", "loadbalance", "tsig", "rewrite", "autopath", "acl", "cache", "header",
    "dnssec", "tls", "minimal", "template", "transfer", "hosts", "route53", "azure", "clouddns",
    "k8s_external", "kubernetes", "file", "auto", "secondary", "etcd", "loop", "forward", "grpc",
    "erratic", "whoami", "on", "sign", "view", "nomad",
)

DIRECTIVES: Final = frozenset(ORDER) | {"import"}
"""Names the Corefile parser accepts at the top level of a server block."""
