"""The Kubernetes watch cache: slim objects, list+watch sources, reflectors and the store.

Never imports dnslib: this package knows the API, not DNS. Only `source.py` and `connect.py`
touch the `kubernetes` client.
"""
