"""Credentials for webhooks and the API, and Grafana's HMAC request signatures.

Every secret comparison is constant-time. Failures never say which part was wrong beyond
"missing" versus "invalid", and nothing here logs a credential.
"""

import hashlib
import hmac
import time

from flask import Request
from pydantic import SecretStr

from config.settings import Settings
from receiver.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="backstop"'}


def _equal(given: str | None, expected: SecretStr) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


def require_token(request: Request, token: SecretStr | None, *, user: str | None = None) -> None:
    """Require `Authorization: Bearer <token>` (or basic auth as `user`); None means open."""
    if token is None:
        return
    auth = request.authorization
    if auth is None:
        raise _unauthorized("missing credentials")
    if auth.type == "bearer":
        ok = _equal(auth.token, token)
    elif auth.type == "basic" and user is not None:
        # Both halves are always compared, so timing does not reveal which one was wrong.
        ok = _equal(auth.username, SecretStr(user)) & _equal(auth.password, token)
    else:
        ok = False
    if not ok:
        raise _unauthorized("invalid credentials")


def require_webhook_auth(request: Request, settings: Settings) -> None:
    """Webhooks accept the webhook token as a bearer token or as the basic-auth password."""
    require_token(request, settings.webhook_token, user=settings.webhook_user)


def require_api_auth(request: Request, settings: Settings) -> None:
    """The JSON API accepts its own bearer token."""
    require_token(request, settings.api_token)


def grafana_signature(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """Grafana's signature: hex HMAC-SHA256 over the body, or over "<ts>:<body>"."""
    message = body if timestamp is None else timestamp.encode() + b":" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_grafana_signature(
    request: Request, settings: Settings, body: bytes, *, now: float | None = None
) -> None:
    """When an HMAC secret is configured, require a valid, fresh Grafana signature."""
    secret = settings.grafana_hmac_secret
    if secret is None:
        return
    signature = request.headers.get(settings.grafana_signature_header)
    if not signature:
        raise _unauthorized(f"missing {settings.grafana_signature_header} header")
    timestamp = request.headers.get(settings.grafana_timestamp_header)
    if timestamp is not None:
        timestamp = timestamp.strip()
        try:
            sent = int(timestamp)
        except ValueError:
            raise _unauthorized("invalid signature timestamp") from None
        if sent > 10**11:  # milliseconds: accept both, Grafana documents seconds
            sent //= 1000
        skew = abs((time.time() if now is None else now) - sent)
        if skew > settings.grafana_max_skew_seconds:
            raise _unauthorized("stale signature timestamp")
    expected = grafana_signature(secret.get_secret_value(), body, timestamp)
    if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
        raise _unauthorized("invalid signature")
