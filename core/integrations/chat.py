"""One HTTP request to a chat platform (Slack, Microsoft Teams), its failures classified.

Webhook URLs and bot tokens are secrets: they arrive as SecretStr, are revealed only to
build the request, and never appear in an error message (requests' own exceptions quote the
URL, so only their type is kept, and they are never chained).

Errors: no connection made (refused, DNS, connect timeout) → TransientError, nothing was
sent; a 429 → RateLimited with the seconds of its Retry-After; a 5xx → TransientError; the
connection lost or the answer not in time after the request went out → TimedOut (the
platform may have posted the message: the caller must not send it again); other statuses
are the caller's to read (a 4xx usually → PermanentError). requests does not retry
(`max_retries=0`): the job's backoff does the waiting, on the lowest-priority queue.
"""

from urllib.parse import urlsplit

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from core.errors import TimedOut, TransientError

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
# Retry-After beyond this is not believed (a misbehaving proxy): the job's schedule rules.
MAX_RETRY_AFTER = 3600
# How much of an error body an error message quotes (Slack's codes are short words).
QUOTED = 120


class RateLimited(TransientError):
    """The platform asked us to slow down (HTTP 429, or Slack's `ratelimited`)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def session() -> requests.Session:
    """A session that never retries on its own and follows no redirect."""
    http = requests.Session()
    adapter = HTTPAdapter(max_retries=0)
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    return http


def post_json(
    http: requests.Session,
    platform: str,
    url: SecretStr | str,
    body: dict,
    *,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """POST `body` as JSON; the response of any status but 429 and 5xx (those raise)."""
    target = url.get_secret_value() if isinstance(url, SecretStr) else url
    try:
        response = http.post(
            target,
            json=body,
            headers=headers,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            allow_redirects=False,
        )
    except requests.ConnectTimeout:
        raise TransientError(f"{platform} unreachable: connect timeout") from None
    except requests.ConnectionError as exc:
        if _not_connected(exc):
            raise TransientError(f"{platform} unreachable: {_kind(exc)}") from None
        raise TimedOut(f"{platform} dropped the connection: {_kind(exc)}") from None
    except requests.Timeout as exc:  # the request was sent; the answer did not come
        raise TimedOut(f"{platform} did not answer in time: {_kind(exc)}") from None
    except requests.RequestException as exc:
        raise TransientError(f"{platform} request failed: {_kind(exc)}") from None
    status = response.status_code
    if status == 429:
        raise RateLimited(f"{platform} rate limited (429)", retry_after(response))
    if status >= 500:
        raise TransientError(f"{platform} unavailable ({status}): {error_text(response, url)}")
    return response


def error_text(response: requests.Response, url: SecretStr | str) -> str:
    """An error answer's body, quotable: short, one line, the URL cut out when secret."""
    secrets = (url.get_secret_value(),) if isinstance(url, SecretStr) else ()
    return quoted(response.text, *secrets)


def retry_after(response: requests.Response) -> float | None:
    """The seconds of a Retry-After header (Slack sends whole seconds); None without one."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) if seconds == seconds else None


def quoted(text: str, *secrets: str) -> str:
    """An error body as an error message may carry it: short, one printable line, with
    whatever of `secrets` it echoes (a proxy's error page may quote the URL) cut out."""
    for secret in secrets:
        for part in _parts(secret):
            text = text.replace(part, "[redacted]")
    line = " ".join(text.split())
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line[:QUOTED] or "(no body)"


def _parts(secret: str) -> list[str]:
    """A secret URL, its path and its query (each secret on its own), longest first."""
    parts = urlsplit(secret) if "://" in secret else None
    found = [secret]
    if parts is not None:
        found += [p for p in (parts.path, parts.query) if len(p) > 1]
    return sorted(set(found), key=len, reverse=True)


def _not_connected(exc: requests.ConnectionError) -> bool:
    """Did the request fail before a connection was made (so nothing was sent)?"""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _kind(exc: Exception) -> str:
    """What went wrong, without requests' message (it quotes the URL)."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", None)
    return type(reason).__name__ if isinstance(reason, Exception) else type(exc).__name__
