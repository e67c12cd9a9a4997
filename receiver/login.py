"""Logging in to the dashboard and out again.

A user logs in with a name and password from the users file (BACKSTOP_USERS_FILE, hashed
passwords, a role each) or with the API token (as an operator). A session lives in Redis;
the browser holds only its random id, in an HttpOnly, SameSite=Lax cookie (Secure behind
https). The login form itself is protected against cross-site posting by a double-submit
nonce. Failed logins are counted per client address and per name, each against its own
limit in a fixed window (see _throttle_keys).
"""

import hmac
import logging
import re
import secrets
import string
from datetime import timedelta
from urllib.parse import quote, urlsplit

from flask import Blueprint, g, make_response, redirect, render_template, request, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from config.settings import Settings
from core.records import AuditEntry, utcnow
from receiver import access
from receiver.state import AppState, app_state

log = logging.getLogger("backstop.receiver")
bp = Blueprint("login", __name__)

LOGIN_NONCE_COOKIE = "backstop_login"
# Checked against when the name is unknown, so an unknown name costs as long as a wrong
# password and timing does not reveal which names exist.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))
# Browsers drop ASCII tabs and newlines anywhere in a URL and trim C0 controls and spaces
# at its ends ("/\t/evil.example" is "//evil.example" to them); other controls have no
# place in a target either. All of them go before the target is judged.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
_MAX_TARGET = 2048


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only, never another host. The
    answer is what was judged, printable ASCII (anything else percent-encoded), so the
    browser cannot read it differently and the Location header cannot be split."""
    cleaned = _CONTROLS.sub("", target or "").strip(" ")
    # One leading slash, not two; and no backslash, which browsers read as a slash.
    if not cleaned.startswith("/") or cleaned.startswith("//") or "\\" in cleaned:
        return url_for("dashboard.overview")
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc or len(cleaned) > _MAX_TARGET:
        return url_for("dashboard.overview")
    return quote(cleaned, safe=string.punctuation)


@bp.get("/login")
def login_form():
    """The login page, with a fresh nonce for the form and its cookie."""
    return _form(error=None, status=200)


def _form(*, error: str | None, status: int):
    state = app_state()
    nonce = secrets.token_urlsafe(24)
    page = render_template(
        "login.html",
        nonce=nonce,
        error=error,
        next=safe_next(request.values.get("next")),
        has_users=bool(state.users.users),
        username=request.form.get("username", "")[:64],
    )
    response = make_response(page, status)
    response.set_cookie(
        LOGIN_NONCE_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        samesite="Strict",
        secure=state.settings.secure_cookies,
        path="/login",
    )
    return response


@bp.post("/login")
def login():
    """Check the credentials; on success start a session and go where the user was going."""
    state = app_state()
    sent, expected = request.form.get("nonce", ""), request.cookies.get(LOGIN_NONCE_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _form(error="The form expired; please try again.", status=400)
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")
    token = request.form.get("token", "").strip()
    settings, sessions = state.settings, state.store.sessions
    limits = _throttle_keys(settings, None if token else username)
    if sessions.login_blocked(*limits):
        log.warning("login throttled for %s", username or "token")
        minutes = -(-settings.login_window_seconds // 60)
        return _form(error=f"Too many failed attempts; wait {minutes} minutes.", status=429)
    found = _check(state, username, password, token)
    if found is None:
        window = timedelta(seconds=settings.login_window_seconds)
        sessions.login_failed(*(who for who, _ in limits), window=window)
        log.warning("failed login for %s", username or "token")
        return _form(error="Wrong name, password or token.", status=401)
    name, role, via = found
    session_id, _ = access.start_session(state, user=name, via=via)
    _audit(state, f"user:{name}", "login", f"role {role}, by {via}")
    response = redirect(safe_next(request.form.get("next")), 303)
    response.set_cookie(
        access.SESSION_COOKIE,
        session_id,
        max_age=int(access.session_ttl(state).total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=state.settings.secure_cookies,
        path="/",
    )
    response.delete_cookie(LOGIN_NONCE_COOKIE, path="/login")
    return response


def _throttle_keys(settings: Settings, name: str | None) -> list[tuple[str, int]]:
    """(counter, limit) pairs a login attempt is checked and counted against: its client
    address always, and the name for a password login. Spraying names from one address
    meets the address's limit; guessing one name from many addresses meets the name's (so
    an attacker can lock a known name out for a window: the price of stopping that). A
    token login has no name: a locked name never stops the token, and a locked address
    stops no other address. Nothing is cleared on success, so logging in with one's own
    account does not reset an attacker's count."""
    limits = [(f"address:{request.remote_addr or '-'}", settings.login_max_failures_per_address)]
    if name:
        limits.append((f"name:{name}", settings.login_max_failures_per_name))
    return limits


def _check(state: AppState, username: str, password: str, token: str):
    """(name, role, via) for good credentials, else None."""
    if token:
        api_token = state.settings.api_token
        if api_token is not None and hmac.compare_digest(
            token.encode(), api_token.get_secret_value().encode()
        ):
            return "token", "operator", "token"
        return None
    if not username or not password:
        return None
    user = state.users.get(username)
    if not check_password_hash(user.password_hash if user else _DUMMY_HASH, password):
        return None
    if user is None:
        return None
    return user.name, user.role, "password"


@bp.post("/logout")
def logout():
    """End the session (the form carries the CSRF token) and return to the login page."""
    state = app_state()
    principal = access.session_principal(request, state)
    response = redirect(url_for("login.login_form"), 303)
    if principal is not None:
        sent = request.form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
            return redirect(url_for("dashboard.overview"), 303)
        state.store.sessions.end(principal.session_id)
        _audit(state, principal.actor, "logout", "")
    response.delete_cookie(access.SESSION_COOKIE, path="/")
    return response


def _audit(state: AppState, actor: str, action: str, reason: str) -> None:
    state.store.automation.audit(
        AuditEntry(
            at=utcnow(),
            actor=actor,
            action=action,
            target="dashboard",
            reason=reason,
            details={"request_id": g.request_id, "address": request.remote_addr or ""},
        )
    )
