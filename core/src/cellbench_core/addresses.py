"""Network addresses as people write them (``127.0.0.1:5025``, ``[::1]:8080``) and the one rule
for which of them only this machine can reach. ``cellbench station init`` and every interface
(through :mod:`cellbench_sdk.access`) decide by these functions."""

from __future__ import annotations

import ipaddress


def split_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:5025`` for an IPv6 address) as (host, port); ValueError naming
    the text if it is none."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isascii() or not port.isdigit() \
            or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port like '127.0.0.1:5025' or '[::1]:5025', "
                         f"not {text!r}")
    return host, int(port)


def join_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) only listens on
    this machine: ``localhost``, any of 127.0.0.0/8, ``::1`` (also as ``::ffff:127.x.y.z``)."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: reachable from wherever it resolves
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
