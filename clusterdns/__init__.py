"""clusterdns: a Kubernetes cluster DNS server that can stand in for CoreDNS."""

from typing import Final

__version__: Final = "0.1.0"
APP_NAME: Final = "clusterdns"
