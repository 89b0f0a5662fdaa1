"""Who a request is: tokens (``Authorization: Bearer``) for programs, page logins (a session
in a secure, HTTP-only cookie) for people, with viewer and operator roles as the rci's.

Without tokens the interface serves loopback only (the interface refuses anything else), and
everyone there is an operator (a read-only server: a viewer). A request that changes something
and is not token-authenticated must carry the ``X-CSRF-Token`` header (the session's token,
which the pages hold): a form or script of another site cannot send that header here (no CORS),
so it cannot act with the browser's cookie or from loopback.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import time
from dataclasses import dataclass

#: The page login's cookie.
SESSION_COOKIE = "cellbench_session"
#: The header that carries the CSRF token.
CSRF_HEADER = "x-csrf-token"
#: Page logins kept at most (the oldest go first).
MAX_SESSIONS = 10_000


class Role(enum.IntEnum):
    """What a client may do: viewers read, operators also control."""

    VIEWER = 1
    OPERATOR = 2


@dataclass(frozen=True)
class Identity:
    """Who asks: ``label`` is what control events record; ``csrf`` the token a page login's
    changes must carry (None: token-authenticated, no CSRF check)."""

    label: str
    role: Role
    csrf: str | None


@dataclass
class _Session:
    identity: Identity
    expires: float


class Refused(Exception):
    """A request refused with HTTP ``status``: ``error`` for programs, ``message`` for
    people."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def token_label(token: str) -> str:
    """How a token shows in events and logs: its first four characters only."""
    return f"token:{token[:4]}…"


class Access:
    """The tokens and page logins of one server. ``highest`` caps every role (VIEWER for a
    read-only server); ``session_lifetime_s`` is how long a login lasts."""

    def __init__(self, tokens: dict[str, Role], *, highest: Role = Role.OPERATOR,
                 session_lifetime_s: float = 12 * 3600.0) -> None:
        self.tokens = {t: min(r, highest) for t, r in tokens.items()}
        self.highest = highest
        self.session_lifetime_s = session_lifetime_s
        self._sessions: dict[str, _Session] = {}
        #: The CSRF token of clients on an open (token-less) server.
        self.open_csrf = secrets.token_urlsafe(24)

    @property
    def open(self) -> bool:
        """No tokens: everyone (on loopback) is let in."""
        return not self.tokens

    def _role_of(self, token: str) -> Role | None:
        for known, role in self.tokens.items():  # compare all: no timing hint of a prefix
            if hmac.compare_digest(known.encode(), token.encode()):
                return role
        return None

    def identify(self, authorization: str | None, session: str | None,
                 client: str) -> Identity | None:
        """The identity of a request with this ``Authorization`` header, session cookie and
        client address, or None (not authenticated)."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            role = self._role_of(token.strip()) if scheme.lower() == "bearer" else None
            return None if role is None else Identity(token_label(token.strip()), role, None)
        if session:
            found = self._sessions.get(session)
            if found is not None and found.expires > time.monotonic():
                return found.identity
            self._sessions.pop(session, None)
        if self.open:
            return Identity(f"web:{client}", self.highest, self.open_csrf)
        return None

    def login(self, token: str) -> tuple[str, Identity] | None:
        """A new page session for ``token``: (cookie value, identity), or None if the token
        is unknown."""
        role = self._role_of(token)
        if role is None:
            return None
        if len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        identity = Identity(token_label(token), role, secrets.token_urlsafe(24))
        session = secrets.token_urlsafe(32)
        self._sessions[session] = _Session(identity,
                                           time.monotonic() + self.session_lifetime_s)
        return session, identity

    def logout(self, session: str | None) -> None:
        """End a page session."""
        if session:
            self._sessions.pop(session, None)
