"""Who may reach a network interface (rci, web): the loopback rule and token files.

Interfaces bind to 127.0.0.1 by default; anything reachable from other machines needs
authentication, with a viewer and an operator role::

    from cellbench_sdk.access import is_loopback, read_token_file

    tokens = read_token_file(base_dir / settings.token_file)  # {"<token>": "operator", ...}
    if not is_loopback(host) and not tokens:
        raise ValueError("reachable from other machines: set tokens first")
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

RoleName = Literal["viewer", "operator"]

__all__ = ["RoleName", "is_loopback", "read_token_file"]

_ROLES: dict[str, RoleName] = {"viewer": "viewer", "operator": "operator"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> dict[str, RoleName]:
    """``<token> <role>`` lines (role ``viewer`` or ``operator``; ``#`` comments) as a dict;
    ValueError names the file and line of a bad one."""
    tokens: dict[str, RoleName] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        role = _ROLES.get(words[1].lower()) if len(words) == 2 else None
        if role is None:
            raise ValueError(f"{path}:{number}: expected '<token> viewer' or "
                             "'<token> operator'")
        tokens[words[0]] = role
    return tokens
