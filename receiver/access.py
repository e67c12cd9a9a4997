"""Who is calling the API or the dashboard, and what they may do.

Two ways in: the API bearer token (scripts, the API's own clients), or a dashboard session
cookie (people, after logging in). Reads need either. State changes need the `operator`
role, and a session-authenticated one must also carry the session's CSRF token in the
`X-CSRF-Token` header, which a page from another site can neither read nor send.

A session lasts only as long as the credential it was made with: it carries that
credential's stamp (the API token's, or the user's entry in the users file), and each
request compares it with the stamp of the credential as this process loaded it. A rotated
token, or a user removed or given another password or role, ends the session at its next
request, on every replica that runs with the new credentials.
"""

import hmac
import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import Request, g

from core.store.sessions import Session
from receiver import auth
from receiver.errors import ApiError
from receiver.state import AppState

log = logging.getLogger("backstop.receiver")

SESSION_COOKIE = "backstop_session"
CSRF_HEADER = "X-CSRF-Token"
ACTOR_HEADER = "X-Backstop-Actor"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: str  # "viewer" or "operator"
    via: str  # "token" (API bearer token) or "session"
    csrf: str = ""
    session_id: str = ""

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"api:{self.name}" if self.via == "token" else f"user:{self.name}"

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


def session_principal(request: Request, state: AppState) -> Principal | None:
    """The logged-in user of this request's session cookie, if any."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id or len(session_id) > 128:
        return None
    sessions = state.store.sessions
    found = sessions.get(session_id, ttl=session_ttl(state), key=state.settings.session_key)
    if found is None:
        return None
    expected = credential_stamp(state, user=found.user, via=found.via)
    if expected is None or not hmac.compare_digest(found.stamp.encode(), expected.encode()):
        log.info("session of %s ended: its credential changed", found.user)
        sessions.end(session_id)
        return None
    return Principal(
        name=found.user, role=found.role, via="session", csrf=found.csrf, session_id=session_id
    )


def credential_stamp(state: AppState, *, user: str, via: str) -> str | None:
    """The stamp of the credential a session of `user` made `via` token or password would
    carry now; None when there is no such credential (no token, no such user)."""
    if via == "token":
        return state.settings.token_stamp
    found = state.users.get(user) if via == "password" else None
    return found.stamp if found is not None else None


def start_session(state: AppState, *, user: str, via: str) -> tuple[str, Session]:
    """Start a session for the API token's holder (via "token") or a user of the users file
    (via "password"), with the credential's current stamp; (cookie value, session)."""
    stamp = credential_stamp(state, user=user, via=via)
    if stamp is None:
        raise ValueError(f"no credential for a {via} session of {user}")
    if via == "token":
        role = "operator"
    else:
        account = state.users.get(user)
        assert account is not None, "a password session's user has a stamp, so exists"
        role = account.role
    return state.store.sessions.create(
        user=user,
        role=role,
        via=via,
        stamp=stamp,
        ttl=session_ttl(state),
        key=state.settings.session_key,
    )


def session_ttl(state: AppState) -> timedelta:
    """How long an idle session lives."""
    return timedelta(hours=state.settings.session_hours)


def token_principal(request: Request) -> Principal:
    """The API token's holder, named by the optional X-Backstop-Actor header."""
    name = request.headers.get(ACTOR_HEADER, "").strip()[:64]
    return Principal(name=name or "token", role="operator", via="token")


def authenticate(request: Request, state: AppState) -> Principal:
    """The caller: a bearer token if one is sent, else a session; 401 when neither."""
    if state.settings.api_token is None:  # insecure local mode: everyone is an operator
        return session_principal(request, state) or Principal("local", "operator", "token")
    if request.authorization is not None:
        auth.require_api_auth(request, state.settings)
        return token_principal(request)
    principal = session_principal(request, state)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing credentials: send the API token or log in to the dashboard",
            headers={"WWW-Authenticate": 'Bearer realm="backstop"'},
        )
    return principal


def require_action_allowed(request: Request, principal: Principal) -> None:
    """State changes: only operators, and a session's requests must carry its CSRF token."""
    if request.method in SAFE_METHODS:
        return
    if not principal.can_act:
        raise ApiError(403, "forbidden", f"{principal.name} is a viewer; only operators can act")
    if principal.via == "session":
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
            raise ApiError(403, "csrf_failed", f"missing or invalid {CSRF_HEADER} header")


def current() -> Principal | None:
    """The principal authenticated for this request, if any."""
    return g.get("principal")
