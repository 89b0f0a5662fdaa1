"""Who may reach a network interface (rci, web): the loopback rule, token files with a label per
token, and the guard against token guessing. Every interface applies these same rules::

    from cellbench_sdk.access import AuthGuard, is_loopback, read_token_file, split_address

    tokens = read_token_file(base_dir / settings.token_file)  # {"<token>": Token(role, label)}
    host, port = split_address(settings.listen)               # "[::1]:8080" -> ("::1", 8080)
    if not is_loopback(host) and not tokens:
        raise ValueError("reachable from other machines: set tokens first")

A token's *label* (``alice``, ``lims``) is what control events store and logs show, never any
part of the secret.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cellbench_core.addresses import is_loopback, join_address, split_address

RoleName = Literal["viewer", "operator"]

__all__ = ["AuthGuard", "RoleName", "Token", "is_loopback", "join_address", "parse_token",
           "read_token_file", "settings_tokens", "split_address"]

log = logging.getLogger(__name__)

_ROLES: dict[str, RoleName] = {"viewer": "viewer", "operator": "operator"}
#: A token's label: what events and logs show of it.
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Token:
    """A token's role and its label (what events and logs show)."""

    role: RoleName
    label: str


def parse_token(token: str, words: list[str], where: str, default_label: str) -> Token:
    """A token's entry from its ``<role> [label]`` words; without a label it is known as
    ``default_label`` (and a warning says so). ValueError naming ``where`` if bad."""
    role = _ROLES.get(words[0].lower()) if 1 <= len(words) <= 2 else None
    if role is None:
        raise ValueError(f"{where}: expected a role (viewer or operator) and a label, like "
                         "'operator alice'")
    if len(words) == 1:
        log.warning("%s: a token without a label is shown as %r; add a label (a name like "
                    "'alice' or 'lims') after its role", where, default_label)
        return Token(role, default_label)
    label = words[1]
    if not _LABEL.fullmatch(label):
        raise ValueError(f"{where}: label {label[:20]!r} is not a name of letters, digits and "
                         "_.@+- (at most 64)")
    if label == token:
        raise ValueError(f"{where}: the label must not be the token itself")
    return Token(role, label)


def read_token_file(path: Path) -> dict[str, Token]:
    """``<token> <role> <label>`` lines (role ``viewer`` or ``operator``; ``#`` comments) as a
    dict. A line without a label (the older two-column form) gets the label ``token-<line>``
    with a warning. ValueError names the file and line of a bad one, or of a label or token
    given twice."""
    tokens: dict[str, Token] = {}
    labels: dict[str, int] = {}  # label: its line
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path}:{number}"
        if len(words) == 1:
            raise ValueError(f"{where}: expected '<token> viewer|operator <label>'")
        entry = parse_token(words[0], words[1:], where, f"token-{number}")
        if words[0] in tokens:
            raise ValueError(f"{where}: this token is also on line "
                             f"{labels[tokens[words[0]].label]}")
        if entry.label in labels:
            raise ValueError(f"{where}: label {entry.label!r} is also on line "
                             f"{labels[entry.label]}")
        tokens[words[0]] = entry
        labels[entry.label] = number
    return tokens


def settings_tokens(tokens: Mapping[str, str], where: str) -> dict[str, Token]:
    """The ``tokens`` table of an interface's settings (``"<token>" = "<role> <label>"``)."""
    entries: dict[str, Token] = {}
    for n, (token, value) in enumerate(tokens.items(), 1):
        entry = parse_token(token, value.split(), f"{where}: the token number {n} in tokens",
                            f"tokens-{n}")
        if any(e.label == entry.label for e in entries.values()):
            raise ValueError(f"{where}: the label {entry.label!r} is given to two tokens")
        entries[token] = entry
    return entries


@dataclass
class _Failures:
    count: int = 0  # within the window
    since: float = 0.0  # the window's start
    unlogged: int = 0  # failures not in a log line yet


class AuthGuard:
    """Slows down and stops token guessing from a source address, and logs failures as
    summaries, never a line per attempt.

    Each failed attempt from an address (within ``window_s`` of its first) makes the next answer
    wait longer (``base_delay_s``, doubling, at most ``max_delay_s``); after ``max_failures``
    the address is refused outright until the window ends. An interface also closes a
    connection after ``per_connection`` failures of its own. ``attempt`` names what failed in
    the log (``AUTH``, ``token``). The first failure from an address
    is logged at once; later ones once per ``window_s`` as "37 failed AUTH from 127.0.0.1 in
    the last 60 s".
    """

    def __init__(self, interface: str, *, attempt: str = "AUTH", window_s: float = 60.0,
                 max_failures: int = 20, per_connection: int = 3, base_delay_s: float = 0.25,
                 max_delay_s: float = 4.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interface, self.attempt = interface, attempt
        self.window_s, self.max_failures = window_s, max_failures
        self.per_connection = per_connection
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    def blocked(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: it may now)."""
        self.sweep()
        found = self._failures.get(address)
        if found is None or found.count < self.max_failures:
            return 0.0
        return max(0.0, found.since + self.window_s - self._clock())

    def failed(self, address: str) -> float:
        """Count a failed attempt from ``address``; return how long to wait before answering."""
        now = self._clock()
        self.sweep()
        found = self._failures.get(address)
        if found is None:
            found = self._failures[address] = _Failures(since=now)
            log.warning("%s: failed %s from %s (further failures from there are logged as a "
                        "count every %g s)", self.interface, self.attempt, address,
                        self.window_s)
        else:
            found.unlogged += 1
        found.count += 1
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** (found.count - 1))

    def sweep(self) -> None:
        """Log the counts of windows that ended, and forget them."""
        now = self._clock()
        for address, found in list(self._failures.items()):
            if now - found.since >= self.window_s:
                if found.unlogged:
                    log.warning("%s: %d failed %s from %s in the last %g s", self.interface,
                                found.unlogged, self.attempt, address, self.window_s)
                del self._failures[address]
