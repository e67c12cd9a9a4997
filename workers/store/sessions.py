"""Dashboard sessions and login throttling.

A session id is a random 256-bit value that only the browser holds (in an HttpOnly
cookie); Redis keeps its SHA-256, so a copy of the database cannot be replayed as a
cookie. Sessions expire after a period of inactivity and can be ended at logout.
"""

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

import redis

from workers.store import keys

# Failed logins allowed per name and per client address before a pause.
MAX_FAILURES = 10
FAILURE_WINDOW = timedelta(minutes=15)
# A session is refreshed (its expiry pushed back) at most this often, not on every request.
REFRESH_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Session:
    """Who is logged in, with what role, and the token their state changes must carry."""

    user: str
    role: str
    csrf: str
    via: str  # "password" or "token"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Sessions in Redis, each with a sliding expiry."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def create(self, *, user: str, role: str, via: str, ttl: timedelta) -> tuple[str, Session]:
        """Start a session; returns the id for the cookie and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(user=user, role=role, csrf=secrets.token_urlsafe(32), via=via)
        record = {"user": user, "role": role, "csrf": session.csrf, "via": via}
        self.redis.set(keys.SESSION + _digest(session_id), json.dumps(record), ex=ttl)
        return session_id, session

    def get(self, session_id: str, *, ttl: timedelta) -> Session | None:
        """The live session with this id, its expiry pushed back; None when unknown."""
        key = keys.SESSION + _digest(session_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        raw, left = pipe.execute()
        if not raw:
            return None
        if left is not None and 0 <= left < (ttl - REFRESH_AFTER).total_seconds():
            self.redis.expire(key, ttl)
        data = json.loads(raw)
        return Session(user=data["user"], role=data["role"], csrf=data["csrf"], via=data["via"])

    def end(self, session_id: str) -> None:
        """Log out: forget the session."""
        self.redis.delete(keys.SESSION + _digest(session_id))

    # -- throttling ------------------------------------------------------------------------

    def login_blocked(self, *whos: str) -> bool:
        """True when any of `whos` (a name, an address) failed too often recently."""
        counts = self.redis.mget([keys.LOGIN_FAILURES + who for who in whos])
        return any(int(count) >= MAX_FAILURES for count in counts if count is not None)

    def login_failed(self, *whos: str) -> None:
        """Count a failed login against each of `whos`, forgotten after the window."""
        pipe = self.redis.pipeline(transaction=False)
        for who in whos:
            pipe.incr(keys.LOGIN_FAILURES + who)
            pipe.expire(keys.LOGIN_FAILURES + who, FAILURE_WINDOW, nx=True)
        pipe.execute()

    def login_succeeded(self, *whos: str) -> None:
        """A successful login clears the count for its name."""
        self.redis.delete(*(keys.LOGIN_FAILURES + who for who in whos))
