"""How integration failures are classified, so jobs know whether to retry."""


class IntegrationError(Exception):
    """A call to an outside system failed."""


class TransientError(IntegrationError):
    """Worth retrying with backoff: timeouts, connection errors, 409, 429, 5xx."""


class TimedOut(TransientError):
    """No answer in time: the outside system may have acted on the request all the same."""


class PermanentError(IntegrationError):
    """Retrying will not help: 400, 401, 403, 404, 422, invalid data. Fail and page."""
