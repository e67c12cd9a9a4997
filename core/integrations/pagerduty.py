"""PagerDuty Events API v2, through the `pagerduty` package's EventsApiV2Client.

Errors: an HTTP 429 or 5xx answer, and network failures (`pagerduty.Error` without a
response) → TransientError: the incident job retries with backoff for hours. A 400
(an invalid event) → PermanentError: recorded and shown, never retried. The client's own
retries are bounded so that the job's backoff, not a blocked worker, does the waiting.
No network call happens in the constructor.

Links and images carry URLs that may come from outside (an alert's generatorURL, a CI
pipeline URL): only http(s) links and https images are sent; others are left out.
"""

import ssl
from datetime import datetime
from typing import Any

import pagerduty

from core import urls
from core.errors import PermanentError, TransientError

SUMMARY_MAX = 1024
DEDUP_MAX = 255
TIMEOUT = 10.0


class Pager:
    """Sends events to one PagerDuty service (its integration's routing key)."""

    def __init__(
        self, routing_key: str, *, base_url: str | None = None, ca_file: str | None = None
    ):
        self._routing_key = routing_key
        self._base_url = base_url
        self._ca_file = ca_file
        self._client: pagerduty.EventsApiV2Client | None = None

    def _events(self) -> pagerduty.EventsApiV2Client:
        if self._client is None:
            # httpx.Client's options, which the client passes on (its **kw are untyped).
            options: dict[str, Any] = {"timeout": TIMEOUT}
            if self._ca_file:
                options["verify"] = ssl.create_default_context(cafile=self._ca_file)
            client = pagerduty.EventsApiV2Client(
                self._routing_key, base_url=self._base_url, **options
            )
            client.retry[429] = 2  # then give the job's backoff the waiting
            # The client retries 5xx itself, with sleeps (up to ~22 s for a 503), holding the
            # worker: a rollback queued meanwhile would wait for it. The job's retries
            # (INCIDENT_RETRY, on its own queue) do that waiting instead.
            for status in (500, 502, 503, 504):
                client.retry[status] = 0
            client.max_network_attempts = 1
            self._client = client
        return self._client

    def trigger(
        self,
        *,
        dedup_key: str,
        summary: str,
        source: str,
        severity: str,
        timestamp: datetime,
        component: str = "",
        group: str = "",
        class_: str = "",
        custom_details: dict | None = None,
        links: list[dict] | None = None,
        images: list[dict] | None = None,
    ) -> str:
        """Open (or update) the incident for `dedup_key`."""
        payload = {"timestamp": timestamp.isoformat()}
        links = [item for item in links or [] if urls.http_url(item.get("href"))]
        images = [item for item in images or [] if urls.https_url(item.get("src"))]
        for name, value in (("component", component), ("group", group), ("class", class_)):
            if value:
                payload[name] = value
        return self._send(
            lambda events: events.trigger(
                summary[:SUMMARY_MAX],
                source,
                dedup_key=dedup_key[:DEDUP_MAX],
                severity=severity,
                payload=payload,
                custom_details=custom_details,
                links=links or None,
                images=images or None,
            )
        )

    def resolve(self, *, dedup_key: str) -> str:
        """Resolve the incident for `dedup_key`."""
        return self._send(lambda events: events.resolve(dedup_key[:DEDUP_MAX]))

    def _send(self, call) -> str:
        try:
            return call(self._events())
        except pagerduty.Error as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if status is None or status == 429 or status >= 500:
                raise TransientError(f"PagerDuty unavailable: {status or 'network'}") from None
            raise PermanentError(f"PagerDuty refused the event ({status}): {exc}") from None
