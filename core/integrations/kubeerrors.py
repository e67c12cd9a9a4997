"""How a Kubernetes client error maps to Backstop's errors.

`ApiException` with status 409, 429 or 5xx, urllib3 timeouts and connection errors →
TransientError (retry); 410 Gone (an expired watch resourceVersion or LIST continue
token) → Gone (list again from the start); 404 → NotFound; any other status (400, 401,
403, 422, ...) → PermanentError.
"""

import urllib3
from kubernetes.client.exceptions import ApiException

from core.errors import PermanentError, TransientError


class Gone(TransientError):
    """A watch's resourceVersion or a LIST's continue token is too old: list again."""


class NotFound(PermanentError):
    """The object does not exist (404)."""


class Conflict(TransientError):
    """409: the object changed under us (retry from a fresh read), or already exists."""


def classify(exc: Exception) -> Exception:
    """Map a client error to TransientError or PermanentError (see module docstring)."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        detail = f"Kubernetes API {status}: {exc.reason}"
        if status == 410:
            return Gone(detail)
        if status == 404:
            return NotFound(detail)
        if status == 409:
            return Conflict(detail)
        if status == 429 or status >= 500 or status == 0:
            return TransientError(detail)
        return PermanentError(detail)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return TransientError(f"Kubernetes API unreachable: {type(exc).__name__}")
    return exc
