"""Who is calling the API or the dashboard, and what they may do.

Two ways in: the API bearer token (scripts, the API's own clients), or a dashboard session
cookie (people, after logging in). Reads need either. State changes need the `operator`
role, and a session-authenticated one must also carry the session's CSRF token in the
`X-CSRF-Token` header, which a page from another site can neither read nor send.
"""

import hmac
from dataclasses import dataclass
from datetime import timedelta

from flask import Request, g

from receiver import auth
from receiver.errors import ApiError
from receiver.state import AppState

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
    found = state.store.sessions.get(session_id, ttl=session_ttl(state))
    if found is None:
        return None
    return Principal(
        name=found.user, role=found.role, via="session", csrf=found.csrf, session_id=session_id
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
