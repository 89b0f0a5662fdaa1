"""Who a request is: tokens (``Authorization: Bearer``) for programs, page logins (a session
in a secure, HTTP-only cookie) for people, with viewer and operator roles as the rci's.

Without tokens the interface serves loopback only (the interface refuses anything else), and
everyone there is an operator (a read-only server: a viewer). A request that changes something
and is not token-authenticated must carry the ``X-CSRF-Token`` header (the session's token,
which the pages hold): a form or script of another site cannot send that header here (no CORS),
so it cannot act with the browser's cookie or from loopback.

A wrong token (bearer or login) is answered after a delay that grows with the failures from its
address, and an address with too many is refused for a while (429): the rules of
:class:`cellbench_sdk.access.AuthGuard`, the rci's too.
"""

from __future__ import annotations

import enum
import hmac
import math
import secrets
import time
from dataclasses import dataclass

from cellbench_sdk.access import AuthGuard

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
    people; the answer waits ``delay_s`` first (a wrong token), and ``retry_after_s`` tells
    when to try again (429)."""

    def __init__(self, status: int, error: str, message: str, *, delay_s: float = 0.0,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.delay_s, self.retry_after_s = delay_s, retry_after_s


class Access:
    """The tokens (each with its role and label) and page logins of one server. ``highest``
    caps every role (VIEWER for a read-only server); ``session_lifetime_s`` is how long a login
    lasts; ``guard`` counts wrong tokens per client address."""

    def __init__(self, tokens: dict[str, tuple[Role, str]], *, highest: Role = Role.OPERATOR,
                 session_lifetime_s: float = 12 * 3600.0, guard: AuthGuard | None = None
                 ) -> None:
        self.tokens = {t: (min(r, highest), label) for t, (r, label) in tokens.items()}
        self.highest = highest
        self.session_lifetime_s = session_lifetime_s
        self.guard = guard or AuthGuard("web", attempt="token")
        self._sessions: dict[str, _Session] = {}
        #: The CSRF token of clients on an open (token-less) server.
        self.open_csrf = secrets.token_urlsafe(24)

    @property
    def open(self) -> bool:
        """No tokens: everyone (on loopback) is let in."""
        return not self.tokens

    def _check(self, token: str, client: str) -> tuple[Role, str]:
        """The role and label of ``token`` from ``client``; Refused (429 while the client is
        blocked, else 401 after a growing delay) if it is unknown."""
        wait = self.guard.blocked(client)
        if wait:
            raise Refused(429, "too_many_failures", f"too many wrong tokens from {client}; "
                          f"try again in {math.ceil(wait)} s", retry_after_s=math.ceil(wait))
        found = None
        for known, entry in self.tokens.items():  # compare all: no timing hint of a prefix
            if hmac.compare_digest(known.encode(), token.encode()):
                found = entry
        if found is None:
            raise Refused(401, "unauthenticated", "unknown token",
                          delay_s=self.guard.failed(client))
        return found

    def identify(self, authorization: str | None, session: str | None,
                 client: str) -> Identity | None:
        """The identity of a request with this ``Authorization`` header, session cookie and
        client address, or None (not authenticated); Refused for a wrong bearer token."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer":
                return None
            role, label = self._check(token.strip(), client)
            return Identity(f"token:{label}", role, None)
        if session:
            found = self._sessions.get(session)
            if found is not None and found.expires > time.monotonic():
                return found.identity
            self._sessions.pop(session, None)
        if self.open:
            return Identity(f"web:{client}", self.highest, self.open_csrf)
        return None

    def login(self, token: str, client: str) -> tuple[str, Identity]:
        """A new page session for ``token`` from ``client``: (cookie value, identity); Refused
        if the token is unknown (as :meth:`identify`)."""
        role, label = self._check(token, client)
        if len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        identity = Identity(f"token:{label}", role, secrets.token_urlsafe(24))
        session = secrets.token_urlsafe(32)
        self._sessions[session] = _Session(identity,
                                           time.monotonic() + self.session_lifetime_s)
        return session, identity

    def logout(self, session: str | None) -> None:
        """End a page session."""
        if session:
            self._sessions.pop(session, None)
