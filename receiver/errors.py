"""One JSON error envelope for every failure: {"error": {"code", "message", "request_id"}}.

Client mistakes are 4xx with a clear message; a Redis outage is 503 so senders retry;
nothing a client sends may produce a 500 (the last-resort handler exists for our bugs).
Dashboard pages get the same status and message as an HTML page instead.
"""

import logging

from flask import Flask, g, jsonify, render_template, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from receiver.answers import ErrorBody, ErrorEnvelope

log = logging.getLogger("backstop.receiver")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


class ApiError(Exception):
    """An error answered to the client as-is."""

    def __init__(self, status: int, code: str, message: str, *, details=None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


# Blueprints whose pages are HTML for people rather than JSON for programs.
HTML_BLUEPRINTS = ("dashboard", "login")


def error_response(status: int, code: str, message: str, *, details=None, headers=None):
    """Build the envelope response (an HTML page for the dashboard's pages)."""
    if request and request.blueprint in HTML_BLUEPRINTS:
        page = render_template(
            "error.html", status=status, message=message, request_id=g.get("request_id", "")
        )
        return page, status, headers or {}
    body = ErrorBody(
        code=code, message=message, request_id=g.get("request_id", ""), details=details
    )
    response = jsonify(ErrorEnvelope(error=body).model_dump(exclude_none=True))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    """Route every exception through the envelope."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(
            exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = _CODES.get(status, "http_error")
        headers = dict(exc.get_headers()) if status == 405 else {}
        headers.pop("Content-Type", None)
        return error_response(status, code, exc.description or exc.name, headers=headers)

    @app.errorhandler(RedisError)
    def _redis_down(exc: RedisError):
        log.warning("redis unavailable: %s", type(exc).__name__)
        return error_response(
            503, "unavailable", "Redis is unavailable; retry later", headers={"Retry-After": "5"}
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
