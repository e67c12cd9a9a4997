"""Dashboard sessions and login throttling.

A session id is a random 256-bit value that only the browser holds (in an HttpOnly
cookie); Redis keeps its SHA-256, so a copy of the database cannot be replayed as a
cookie. Each record is signed: an HMAC-SHA256, with a key that lives outside Redis, over
the id's digest and the record's contents. Whoever can write to Redis can therefore
neither forge a session nor change one (a viewer's role, say) nor move a record under
another id: a record whose signature is missing or wrong is refused and deleted. Sessions
expire after a period of inactivity and can be ended at logout.
"""

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import asdict, dataclass
from datetime import timedelta

import redis

from core.store import keys

log = logging.getLogger("backstop.store")
# A session is refreshed (its expiry pushed back) at most this often, not on every request.
REFRESH_AFTER = timedelta(minutes=5)
# What the signature covers, in this order; a new field means a new version.
_SIGNED = ("user", "role", "csrf", "via", "stamp")
_DOMAIN = b"backstop-session-v1\x00"


@dataclass(frozen=True)
class Session:
    """Who is logged in, with what role, and the token their state changes must carry."""

    user: str
    role: str
    csrf: str
    via: str  # "password" or "token"
    stamp: str  # fingerprint of the credential it was made with (see receiver/access.py)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _mac(key: bytes, digest: str, fields: dict) -> str:
    """The record's signature: over the id's digest and every signed field."""
    message = json.dumps([digest, *(fields[name] for name in _SIGNED)])
    return hmac.new(key, _DOMAIN + message.encode(), hashlib.sha256).hexdigest()


def _verified(raw: bytes, digest: str, key: bytes) -> Session | None:
    """The session a stored record holds, if it is well formed and signed with `key`."""
    try:
        data = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8
        return None
    if not isinstance(data, dict) or not isinstance(data.get("mac"), str):
        return None
    if not all(isinstance(data.get(name), str) for name in _SIGNED):
        return None
    if not hmac.compare_digest(data["mac"].encode(), _mac(key, digest, data).encode()):
        return None
    return Session(**{name: data[name] for name in _SIGNED})


class SessionStore:
    """Sessions in Redis, each signed and with a sliding expiry; and failed-login counts."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def create(
        self, *, user: str, role: str, via: str, stamp: str, ttl: timedelta, key: bytes
    ) -> tuple[str, Session]:
        """Start a session signed with `key`; returns the id for the cookie and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(
            user=user, role=role, csrf=secrets.token_urlsafe(32), via=via, stamp=stamp
        )
        digest = _digest(session_id)
        record = asdict(session)
        record["mac"] = _mac(key, digest, record)
        self.redis.set(keys.SESSION + digest, json.dumps(record), ex=ttl)
        return session_id, session

    def get(self, session_id: str, *, ttl: timedelta, key: bytes) -> Session | None:
        """The live session with this id, its expiry pushed back; None when unknown. A
        record not signed with `key` (forged, changed, or signed with an old key) is
        deleted."""
        digest = _digest(session_id)
        name = keys.SESSION + digest
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(name)
        pipe.ttl(name)
        raw, left = pipe.execute()
        if not raw:
            return None
        session = _verified(raw, digest, key)
        if session is None:
            # Written or changed by someone without the key, or signed with an old key.
            log.warning("deleted a session record whose signature is missing or wrong")
            self.redis.delete(name)
            return None
        if left is not None and 0 <= left < (ttl - REFRESH_AFTER).total_seconds():
            self.redis.expire(name, ttl)
        return session

    def end(self, session_id: str) -> None:
        """Log out: forget the session."""
        self.redis.delete(keys.SESSION + _digest(session_id))

    # -- throttling ------------------------------------------------------------------------

    def login_blocked(self, *limits: tuple[str, int]) -> bool:
        """True when any (who, limit) pair, e.g. ("address:10.0.0.1", 30), has at least
        `limit` failures in its current window."""
        counts = self.redis.mget([keys.LOGIN_FAILURES + who for who, _ in limits])
        return any(
            count is not None and (not count.isdigit() or int(count) >= limit)
            for count, (_, limit) in zip(counts, limits, strict=True)
        )

    def login_failed(self, *whos: str, window: timedelta) -> None:
        """Count a failed login against each of `whos`. Fixed windows: the first failure
        starts a count that expires `window` later, and later failures never extend it, so
        a lockout ends at most `window` after it began. SET NX EX then INCR in one
        transaction: never a count without an expiry, and no EXPIRE NX (Redis 7) needed."""
        pipe = self.redis.pipeline(transaction=True)
        for who in whos:
            pipe.set(keys.LOGIN_FAILURES + who, 0, ex=window, nx=True)
            pipe.incr(keys.LOGIN_FAILURES + who)
        pipe.execute()
