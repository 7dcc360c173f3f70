"""The public address `up` runs from: the default source allowed to reach SSH and the API."""

from __future__ import annotations

import ipaddress

import httpx

from chiml.errors import UnreachableError

# Plain-text "what is my IP" services; two, so that one being down does not block `up`.
SERVICES = ("https://api.ipify.org", "https://ifconfig.me/ip")


def detect_admin_cidr(transport: httpx.BaseTransport | None = None, timeout_s: float = 5.0) -> str:
    """``<public IPv4>/32`` of this machine, as seen from the internet."""
    problems = []
    with httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=True) as client:
        for url in SERVICES:
            try:
                response = client.get(url)
                response.raise_for_status()
                address = ipaddress.IPv4Address(response.text.strip())
            except (httpx.HTTPError, ValueError) as err:
                problems.append(f"{url}: {err.__class__.__name__}")
                continue
            if not address.is_global:
                problems.append(f"{url}: answered a non-public address {address}")
                continue
            return f"{address}/32"
    raise UnreachableError(
        f"cannot detect this machine's public IPv4 address ({'; '.join(problems)})",
        hint="set chameleon.admin_cidr (e.g. 198.51.100.7/32) to who may reach SSH and the Kubernetes API",
    )
