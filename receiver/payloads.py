"""Vendor webhook payloads (Alertmanager v4, Grafana v1) and their normalization.

Models are lenient (`extra="allow"`): vendors add fields over time, and a new field must
never turn a real alert into a 400. What we rely on is typed and required.

URLs a vendor sends (externalURL, generatorURL, Grafana's silence/dashboard/panel/image
URLs) are kept only when they are absolute http(s) URLs; any other is dropped (stored as
absent), not refused: one alert's bad link must not take its batch down. A CI deployment
event is our own contract: a `url` that is not http(s) is a 400. Numbers must be finite:
`NaN` and `Infinity` (which Python's JSON reader accepts) are a 400 naming the field.
"""

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Literal, TypedDict

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from config.policy import WorkloadKind
from core import markup, urls
from core.models import AlertEvent, Source, label_fingerprint
from receiver.bodies import reject_non_finite
from receiver.fastpath import Group, RecentAlerts

Labels = dict[str, str]
_ZERO = timedelta(0)
# Moments Backstop computes windows around (lookback, merge window, cooldown): anything
# outside would overflow datetime arithmetic. Alertmanager's "no end yet" zero time is
# handled before this check (see _end).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _in_range(moment: datetime) -> datetime:
    """A moment between 1970 and 9000, in UTC; a ValueError (so a 400) otherwise."""
    try:
        moment = _utc(moment)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 has no UTC equivalent
        raise ValueError("timestamp out of range") from None
    # In UTC, and both bounds are the first instant of a year: comparing years is exact,
    # and several times cheaper than comparing aware datetimes (twice per alert).
    if not _EARLIEST.year <= moment.year < _LATEST.year:
        raise ValueError("timestamp must be between 1970 and 9000")
    return moment


def _end_in_range(moment: datetime) -> datetime:
    """Like _in_range, but Alertmanager's zero time (year 1, "not ended") passes as is."""
    return moment if moment.year <= 1 else _in_range(moment)


# Strict: a timestamp string, as the OpenAPI document says and as Alertmanager, Grafana
# and CI send; pydantic's lax mode would also read a number as Unix time.
Moment = Annotated[AwareDatetime, Strict(), AfterValidator(_in_range)]
EndMoment = Annotated[AwareDatetime, Strict(), AfterValidator(_end_in_range)]


def _vendor_url(value: str) -> str:
    """An http(s) URL as is; anything else dropped (empty): never a link, never a 400."""
    if not value or len(value) > urls.MAX_LENGTH:
        return ""
    return _checked_url(value)


@lru_cache(maxsize=1024)  # alerts of one rule repeat their generatorURL; at most 2 MiB held
def _checked_url(value: str) -> str:
    return value if urls.http_url(value) else ""


def _ci_url(value: str) -> str:
    """An http(s) URL or nothing; anything else a ValueError (a 400 naming the field)."""
    if value and not urls.http_url(value):
        raise ValueError("must be an absolute http(s) URL")
    return value


def _visible_name(value: str) -> str:
    """A workload's names never hold an invisible character (Kubernetes allows none):
    one that does is a ValueError (a 400 naming the field)."""
    if markup.has_invisible(value):
        raise ValueError("must not contain invisible or control characters")
    return value


VendorURL = Annotated[str, AfterValidator(_vendor_url)]
CiURL = Annotated[str, AfterValidator(_ci_url)]
VisibleName = Annotated[str, AfterValidator(_visible_name)]


class VendorModel(BaseModel):
    """Base for payloads we receive: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class AlertmanagerAlert(VendorModel):
    """One alert of an Alertmanager webhook."""

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = {}
    startsAt: Moment
    endsAt: EndMoment | None = None
    generatorURL: VendorURL = ""
    fingerprint: str = Field("", max_length=256)


class AlertmanagerWebhook(VendorModel):
    """Alertmanager's webhook body (version "4")."""

    version: str = "4"
    groupKey: str = ""
    status: Literal["firing", "resolved"] | None = None
    receiver: str = ""
    groupLabels: Labels = {}
    commonLabels: Labels = {}
    commonAnnotations: Labels = {}
    externalURL: VendorURL = ""
    truncatedAlerts: StrictInt = 0  # strict: `true` is not a count
    # A Sequence (read only), so that GrafanaWebhook's list of GrafanaAlerts is one too; a
    # JSON body validates to a list all the same.
    alerts: Sequence[AlertmanagerAlert]


class GrafanaAlert(AlertmanagerAlert):
    """One alert of a Grafana webhook: Alertmanager's fields plus links and values."""

    silenceURL: VendorURL = ""
    dashboardURL: VendorURL = ""
    panelURL: VendorURL = ""
    imageURL: VendorURL = ""
    values: dict[str, StrictFloat | None] | None = None  # strict: numbers, as documented
    valueString: str = ""


class GrafanaWebhook(AlertmanagerWebhook):
    """Grafana unified alerting's webhook body (version "1")."""

    version: str = "1"
    orgId: StrictInt | None = None
    state: str = ""
    title: str = ""
    message: str = ""
    alerts: list[GrafanaAlert]


def _utc(moment: datetime) -> datetime:
    # Most senders already use UTC; skipping the conversion then is measurably cheaper.
    return moment if moment.utcoffset() == _ZERO else moment.astimezone(UTC)


def _end(moment: datetime | None) -> datetime | None:
    """Alertmanager marks "no end yet" with the zero time 0001-01-01T00:00:00Z; any other
    end is validated and in UTC already (_end_in_range)."""
    if moment is None or moment.year <= 1:
        return None
    return moment


class _RecentEvents:
    """The events normalized lately, by content: a repeat notification (the bulk of
    Alertmanager's traffic) reuses its equal, immutable AlertEvent instead of building and
    hashing a new one. Bounded; the oldest entries go first."""

    def __init__(self, size: int):
        self.size = size
        # key -> (event, startsAt, endsAt, labels, annotations, values) as received
        self.seen: dict[tuple, tuple] = {}
        self.lock = threading.Lock()  # gthread: evicting while another thread adds raises

    def events(self, source: Source, hook: AlertmanagerWebhook) -> list[AlertEvent]:
        """The webhook's alerts as AlertEvents, reusing equal ones seen lately."""
        found = []
        for alert in hook.alerts:
            key: tuple[str, ...] = (
                source,
                alert.status,
                alert.fingerprint,
                alert.generatorURL,
                hook.groupKey,
                hook.receiver,
                hook.externalURL,
            )
            values = None
            if isinstance(alert, GrafanaAlert):
                key += (alert.dashboardURL, alert.panelURL, alert.silenceURL, alert.valueString)
                values = alert.values
            # Compared, not hashed: equal instants in other offsets normalize alike.
            content = (alert.startsAt, alert.endsAt, alert.labels, alert.annotations, values)
            seen = self.seen.get(key)
            if seen is not None and seen[1:] == content:
                found.append(seen[0])
                continue
            event = _event(source, hook, alert)
            with self.lock:
                self.seen[key] = (event, *content)
                if len(self.seen) > self.size:
                    self.seen.pop(next(iter(self.seen)), None)
            found.append(event)
        return found


_RECENT = _RecentEvents(5_000)


class _RecentBodies:
    """The events of webhook bodies parsed lately, by the body's exact bytes. Alertmanager
    sends the same bytes again and again: each group's re-notification (group_interval,
    repeat_interval) while nothing changed (a firing alert's endsAt stays the zero time),
    and both peers of an HA pair. The same bytes parse to the same events, so a repeat
    skips validation and normalization (about a third of a webhook's time in the receiver;
    bench/ingest.py). Bounded in entries and in body size; the oldest entries go first.
    Only bodies that parsed are kept: an invalid one is validated, and refused, each time."""

    def __init__(self, size: int, max_body: int):
        self.size, self.max_body = size, max_body
        self.seen: dict[tuple[Source, bytes], tuple[AlertEvent, ...]] = {}
        self.lock = threading.Lock()  # gthread: evicting while another thread adds raises

    def events(
        self, source: Source, body: bytes, parse: Callable[[bytes], list[AlertEvent]]
    ) -> list[AlertEvent]:
        """The events of `body`: those of its last sighting, else `parse(body)`'s."""
        if len(body) > self.max_body:
            return parse(body)
        key = (source, body)
        found = self.seen.get(key)
        if found is None:
            found = tuple(parse(body))
            with self.lock:
                self.seen[key] = found
                if len(self.seen) > self.size:
                    self.seen.pop(next(iter(self.seen)), None)
        return list(found)


_BODIES = _RecentBodies(1_000, 16 * 1024)


class _GrafanaFields(TypedDict, total=False):
    """The AlertEvent fields only a Grafana alert has."""

    dashboard_url: str
    panel_url: str
    silence_url: str
    values: dict[str, float | None]
    value_string: str


def _event(source: Source, hook: AlertmanagerWebhook, alert: AlertmanagerAlert) -> AlertEvent:
    extra: _GrafanaFields = {}
    if isinstance(alert, GrafanaAlert):
        extra = {
            "dashboard_url": alert.dashboardURL,
            "panel_url": alert.panelURL,
            "silence_url": alert.silenceURL,
            "values": alert.values or {},
            "value_string": alert.valueString,
        }
    return AlertEvent(
        source=source,
        fingerprint=alert.fingerprint or label_fingerprint(alert.labels),
        status=alert.status,
        labels=alert.labels,
        annotations=alert.annotations,
        # Already in UTC: the validators (_in_range) converted them.
        starts_at=alert.startsAt,
        ends_at=_end(alert.endsAt),
        generator_url=alert.generatorURL,
        group_key=hook.groupKey,
        receiver=hook.receiver,
        external_url=hook.externalURL,
        **extra,
    )


def alertmanager_events(body: bytes) -> list[AlertEvent]:
    """Parse and normalize an Alertmanager webhook; raises pydantic.ValidationError."""
    return _BODIES.events("alertmanager", body, _parse_alertmanager)


def grafana_events(body: bytes) -> list[AlertEvent]:
    """Parse and normalize a Grafana webhook; raises pydantic.ValidationError."""
    return _BODIES.events("grafana", body, _parse_grafana)


def _parse_alertmanager(body: bytes) -> list[AlertEvent]:
    return _parse("alertmanager", body)


def _parse_grafana(body: bytes) -> list[AlertEvent]:
    return _parse("grafana", body)


_WEBHOOKS: dict[Source, type[AlertmanagerWebhook]] = {
    "alertmanager": AlertmanagerWebhook,
    "grafana": GrafanaWebhook,
}
_ALERTS: dict[Source, type[AlertmanagerAlert]] = {
    "alertmanager": AlertmanagerAlert,
    "grafana": GrafanaAlert,
}
# Alerts are about 0.5 KiB; a larger one is validated again each time, not kept.
_RECENT_ALERTS = RecentAlerts(5_000, 4 * 1024)


def _parse(source: Source, body: bytes) -> list[AlertEvent]:
    """The fast path's events (receiver/fastpath.py) when it is certain of them, else the
    events of the body validated whole by its model, which raises its errors."""
    events = _RECENT_ALERTS.events(source, body, _built)
    return events if events is not None else validated_events(source, body)


def validated_events(source: Source, body: bytes) -> list[AlertEvent]:
    """The webhook validated whole by its pydantic model: the reference, and the errors."""
    reject_non_finite(body)
    return _RECENT.events(source, _WEBHOOKS[source].model_validate_json(body))


def _built(group: Group, alerts: list[bytes]) -> list[AlertEvent] | None:
    """The events of alerts the fast path has not seen, each validated by the model's own
    alert model, in the webhook's group; None when the model refuses one."""
    source = group.source
    hook = _WEBHOOKS[source].model_construct(
        groupKey=group.group_key,
        receiver=group.receiver,
        externalURL=_vendor_url(group.external_url),  # as the model's validator does
        alerts=[],
    )
    model = _ALERTS[source]
    try:
        return [_event(source, hook, model.model_validate_json(alert)) for alert in alerts]
    except ValidationError:
        return None


class DeploymentEvent(BaseModel):
    """A deployment reported by CI/CD to /webhooks/deployments (our own contract: strict)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    namespace: VisibleName = Field(min_length=1, max_length=253)
    name: VisibleName = Field(min_length=1, max_length=253)
    kind: WorkloadKind = "Deployment"
    cluster: VisibleName | None = Field(None, min_length=1, max_length=253)
    revision: StrictStr | StrictInt | None = None  # strict: never `true`
    version: str = Field("", max_length=256)
    images: list[str] = Field(default_factory=list, max_length=50)
    started_at: Moment | None = None
    commit: str = Field("", max_length=256)
    previous_commit: str = Field("", max_length=256)
    repository: CiURL = Field("", max_length=urls.MAX_LENGTH)
    pipeline_url: CiURL = Field("", max_length=urls.MAX_LENGTH)
    author: str = Field("", max_length=256)
    url: CiURL = Field("", max_length=urls.MAX_LENGTH)
