"""Logging in to the dashboard and out again.

A user logs in with a name and password from the users file (BACKSTOP_USERS_FILE, hashed
passwords, a role each) or with the API token (as an operator). A session lives in Redis;
the browser holds only its random id, in an HttpOnly, SameSite=Lax cookie (Secure behind
https). The login form itself is protected against cross-site posting by a double-submit
nonce, and repeated failures for a name from an address are throttled.
"""

import hmac
import logging
import secrets

from flask import Blueprint, g, make_response, redirect, render_template, request, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from receiver import access
from receiver.state import AppState, app_state
from workers.records import AuditEntry, utcnow

log = logging.getLogger("backstop.receiver")
bp = Blueprint("login", __name__)

LOGIN_NONCE_COOKIE = "backstop_login"
# Checked against when the name is unknown, so an unknown name costs as long as a wrong
# password and timing does not reveal which names exist.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.overview")
    return target


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
    who = f"{username or 'token'}|{request.remote_addr or '-'}"
    sessions = state.store.sessions
    if sessions.login_blocked(who):
        log.warning("login throttled for %s", username or "token")
        return _form(error="Too many failed attempts; wait 15 minutes.", status=429)
    found = _check(state, username, password, token)
    if found is None:
        sessions.login_failed(who)
        log.warning("failed login for %s", username or "token")
        return _form(error="Wrong name, password or token.", status=401)
    name, role, via = found
    sessions.login_succeeded(who)
    session_id, _ = sessions.create(user=name, role=role, via=via, ttl=access.session_ttl(state))
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
