"""A PagerDuty Events API v2 test double: HTTPS on loopback for the real `pagerduty` client.

pagerduty 7.2.0's EventsApiV2Client is an httpx2.Client: it refuses a base URL that is not
https, and hands its other keyword arguments to httpx2.Client, so it trusts the double's
throwaway CA through `verify=`::

    import ssl
    from pagerduty import EventsApiV2Client

    with PagerDutyDouble() as double:
        client = EventsApiV2Client(
            double.routing_key,
            base_url=double.url,
            verify=ssl.create_default_context(cafile=double.ca_path),
        )
        client.trigger("summary", "source", dedup_key="k", payload={"timestamp": "..."})

`transport=httpx2.HTTPTransport(verify=context)` works as well (httpx2 then ignores `verify=`).
trigger() has no timestamp parameter: an explicit timestamp goes in `payload`.

Validation follows the Events API: a 32-character routing key the double was given,
event_action, dedup_key up to 255 characters (required to acknowledge or resolve); for
trigger, payload.summary (up to 1024), payload.source and payload.severity
(critical/error/warning/info); https image sources; at most 512 KB per event. Invalid events
get 400 `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`.
The routing-key, severity, missing-field and summary-length messages are PagerDuty's own; the
others are worded by the double.

How the client meets the failure modes: it retries 429 without limit (sleep_timer 1.5 s,
doubling) unless `client.retry[429]` caps it; 500/502/503/504 2/4/6/6 times; transport errors
(down() refuses connects, slow() past `client.timeout`) `max_network_attempts` (3) times; then
it raises pagerduty.HttpError / pagerduty.Error. Set `client.sleep_timer` small in tests.
"""

from __future__ import annotations

import re
import ssl
import tempfile
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Self

from testbed.doubles.base import HttpDouble, Request, Response, Route, json_response
from testbed.doubles.tls import Certificates, make_certificates

MAX_EVENT_BYTES = 512 * 1024
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class Incident:
    """The alert a dedup_key names: its state and every event accepted for it."""

    dedup_key: str
    state: str = "triggered"
    events: list[dict[str, Any]] = field(default_factory=list)


class PagerDutyDouble(HttpDouble):
    """POST /v2/enqueue over TLS with a certificate from a CA made at start()."""

    scheme = "https"

    def __init__(self, routing_key: str = "0123456789abcdef0123456789abcdef") -> None:
        super().__init__()
        self.routing_key = routing_key
        self._events: list[dict[str, Any]] = []
        self._incidents: dict[str, Incident] = {}
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        self._certs: Certificates | None = None
        self._context: ssl.SSLContext | None = None
        self._routes: list[Route] = [("POST", re.compile("/v2/enqueue"), self._enqueue)]

    @property
    def ca_path(self) -> Path:
        """The CA certificate a client must trust (valid from start() to stop())."""
        return self._certs.ca

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every accepted event as sent, oldest first."""
        with self._lock:
            return list(self._events)

    @property
    def incidents(self) -> dict[str, Incident]:
        """The current incident per dedup_key; a trigger after resolve starts a new one."""
        with self._lock:
            return dict(self._incidents)

    def start(self) -> Self:
        """Make a CA and serving certificate, then listen."""
        self._tls_dir = tempfile.TemporaryDirectory(prefix="pagerduty-double-")
        self._certs = make_certificates(Path(self._tls_dir.name))
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self._certs.cert, self._certs.key)
        return super().start()

    def stop(self) -> None:
        """Stop serving and delete the certificates."""
        super().stop()
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The serving context; up() after down() reuses it, so clients keep trusting it."""
        return self._context

    def routes(self) -> list[Route]:
        """The one endpoint."""
        return self._routes

    def failure_response(self, status: int) -> Response:
        """A status document naming the injected failure."""
        phrase = HTTPStatus(status).phrase
        return json_response(status, {"status": phrase, "message": phrase})

    def _enqueue(self, request: Request) -> Response:
        """Validate one event and apply it to its incident; 202 with the dedup_key."""
        event = request.json
        if not isinstance(event, dict):
            return json_response(
                400,
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
            )
        errors = self._errors(event, request.body_size)
        if errors:
            return json_response(
                400,
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
            )
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        self._events.append(event)
        self._apply(event["event_action"], dedup_key, event)
        return json_response(
            202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        )

    def _errors(self, event: dict[str, Any], size: int) -> list[str]:
        """Every reason the Events API would reject `event`."""
        if size > MAX_EVENT_BYTES:
            return [f"Event is {size} bytes, larger than the {MAX_EVENT_BYTES} bytes allowed"]
        errors = []
        routing_key = event.get("routing_key")
        if not isinstance(routing_key, str) or len(routing_key) != 32:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        elif routing_key != self.routing_key:
            errors.append("Invalid routing key")
        action = event.get("event_action")
        if action not in ACTIONS:
            errors.append(
                "'event_action' is invalid (must be one of the following: "
                "'trigger', 'acknowledge' or 'resolve')"
            )
        errors += _dedup_key_errors(event.get("dedup_key"), required=action != "trigger")
        if action == "trigger":
            errors += _payload_errors(event.get("payload"))
        errors += _image_errors(event.get("images"))
        return errors

    def _apply(self, action: str, dedup_key: str, event: dict[str, Any]) -> None:
        """Open, update, acknowledge or resolve the incident of `dedup_key`."""
        incident = self._incidents.get(dedup_key)
        if incident is None or incident.state == "resolved":
            if action != "trigger":
                # PagerDuty accepts acknowledge/resolve for no open alert and does nothing.
                return
            incident = self._incidents[dedup_key] = Incident(dedup_key)
        elif action != "trigger":
            incident.state = {"acknowledge": "acknowledged", "resolve": "resolved"}[action]
        incident.events.append(event)


def _dedup_key_errors(dedup_key: Any, *, required: bool) -> list[str]:
    """Problems with the dedup_key."""
    if dedup_key is None or dedup_key == "":
        return ["'dedup_key' is missing or blank"] if required else []
    if not isinstance(dedup_key, str):
        return ["'dedup_key' must be a string"]
    if len(dedup_key) > 255:
        return ["'dedup_key' is too long (maximum is 255 characters)"]
    return []


def _payload_errors(payload: Any) -> list[str]:
    """Problems with a trigger's payload."""
    if not isinstance(payload, dict):
        return ["'payload' is missing or blank"]
    errors = [
        f"'payload.{name}' is missing or blank"
        for name in ("summary", "source", "severity")
        if not isinstance(payload.get(name), str) or not payload[name].strip()
    ]
    if isinstance(payload.get("summary"), str) and len(payload["summary"]) > 1024:
        # PagerDuty's message, spelling included.
        errors.append("'summary' is too long (maiximum is 1024 characters)")
    if payload.get("severity") and payload["severity"] not in SEVERITIES:
        errors.append(
            "'payload.severity' is invalid (must be one of the following: "
            "'critical', 'warning', 'error' or 'info')"
        )
    return errors


def _image_errors(images: Any) -> list[str]:
    """Images must be objects whose src is an https URL."""
    return [
        f"'images[{index}].src' must be an https URL"
        for index, image in enumerate(images or [])
        if not (isinstance(image, dict) and str(image.get("src", "")).startswith("https://"))
    ]
