"""The fast path for alert webhooks: each alert's events reused by its exact bytes.

Alertmanager sends the same alerts again and again (every notification of a group carries
all its alerts, both peers of an HA pair send each one), in bodies that differ elsewhere.
Here the body is decoded by msgspec (compiled) only as far as the webhook's own fields,
each alert kept as its raw JSON; an alert whose bytes were seen lately in the same group
reuses the AlertEvent built then. An alert not seen is validated by the documented
pydantic model itself (receiver/payloads.py builds it), so the events are the same by
construction; the cost of validation is paid once per alert, not once per notification.

The fast path answers only when it is certain the pydantic path would accept the body as
a whole: anything else (a decode error, a field of another type, an alert the model
refuses, a body the checks below cannot vouch for) returns None, and the caller validates
the whole body with pydantic, which gives the error and its message. msgspec accepts
some bodies pydantic refuses, in parts it skips (unknown fields) without checking them as
pydantic's parser does: invalid UTF-8, nesting deeper than its limit, and a number out of
range where `NaN` or `Infinity` is spelt elsewhere (receiver/bodies.py's check). Those
bodies are never taken here (tests/unit/test_fast_path.py compares both paths).
"""

import threading
from collections.abc import Callable
from typing import Annotated, Literal, NamedTuple

import msgspec

from core.models import AlertEvent, Source
from receiver.bodies import may_spell_non_finite

# pydantic's JSON parser refuses nesting deeper than about 200 (jiter's recursion limit);
# a body with fewer opening brackets than this cannot nest that deep.
MAX_OPENERS = 150
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # wider: pydantic decides
_Labels = dict[str, str]


class Group(NamedTuple):
    """What an alert's event takes from its webhook, as received (not yet normalized)."""

    source: Source
    group_key: str
    receiver: str
    external_url: str


class _Envelope(msgspec.Struct, kw_only=True):
    """AlertmanagerWebhook's typed fields, in the same types; the alerts as raw JSON."""

    alerts: list[msgspec.Raw]
    version: str = ""
    groupKey: str = ""
    status: Literal["firing", "resolved"] | None = None
    receiver: str = ""
    groupLabels: _Labels = {}
    commonLabels: _Labels = {}
    commonAnnotations: _Labels = {}
    externalURL: str = ""
    truncatedAlerts: _Int64 = 0


class _GrafanaEnvelope(_Envelope, kw_only=True):
    """GrafanaWebhook's typed fields beyond Alertmanager's."""

    orgId: _Int64 | None = None
    state: str = ""
    title: str = ""
    message: str = ""


_DECODERS: dict[Source, msgspec.json.Decoder[_Envelope]] = {
    "alertmanager": msgspec.json.Decoder(_Envelope),
    "grafana": msgspec.json.Decoder(_GrafanaEnvelope),
}

# Events for the alerts not seen lately, in order; None when any of them is refused.
Build = Callable[[Group, list[bytes]], list[AlertEvent] | None]


def envelope(source: Source, body: bytes) -> _Envelope | None:
    """The webhook's own fields and its raw alerts, when the pydantic path would accept
    the body as far as those go; None when that is not certain."""
    if may_spell_non_finite(body):
        return None  # receiver/bodies.py's check reads those bodies in full
    if not body.isascii():
        try:
            body.decode()  # what msgspec skips, pydantic's parser checks: UTF-8 throughout
        except UnicodeDecodeError:
            return None
    if body.count(b"{") + body.count(b"[") >= MAX_OPENERS:
        return None
    try:
        return _DECODERS[source].decode(body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None


class RecentAlerts:
    """The events of alerts seen lately, by the alert's exact bytes, with the group (and
    source) they came in. Bounded in entries and in an alert's size; the oldest go first."""

    def __init__(self, size: int, max_alert: int):
        self.size, self.max_alert = size, max_alert
        self.seen: dict[bytes, tuple[Group, AlertEvent]] = {}
        self.lock = threading.Lock()  # gthread: evicting while another thread adds raises

    def events(self, source: Source, body: bytes, build: Build) -> list[AlertEvent] | None:
        """The webhook's events, or None when the pydantic path must decide."""
        found = envelope(source, body)
        if found is None:
            return None
        group = Group(source, found.groupKey, found.receiver, found.externalURL)
        alerts = [bytes(raw) for raw in found.alerts]  # a Raw is not hashable
        get = self.seen.get
        hits = [
            seen[1] if (seen := get(alert)) is not None and seen[0] == group else None
            for alert in alerts
        ]
        missing = [alert for alert, hit in zip(alerts, hits, strict=True) if hit is None]
        built: list[AlertEvent] = []
        if missing:
            made = build(group, missing)
            if made is None:
                return None
            built = made
            self._remember(group, missing, built)
        fresh = iter(built)
        return [hit if hit is not None else next(fresh) for hit in hits]

    def _remember(self, group: Group, alerts: list[bytes], events: list[AlertEvent]) -> None:
        with self.lock:
            for alert, event in zip(alerts, events, strict=True):
                if len(alert) <= self.max_alert:
                    self.seen[alert] = (group, event)
            while len(self.seen) > self.size:
                self.seen.pop(next(iter(self.seen)), None)
