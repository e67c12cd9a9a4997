"""Vendor webhook payloads (Alertmanager v4, Grafana v1) and their normalization.

Models are lenient (`extra="allow"`): vendors add fields over time, and a new field must
never turn a real alert into a 400. What we rely on is typed and required.
"""

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from config.policy import WorkloadKind
from workers.models import AlertEvent, Source, label_fingerprint

Labels = dict[str, str]
_ZERO = timedelta(0)


class VendorModel(BaseModel):
    """Base for payloads we receive: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow")


class AlertmanagerAlert(VendorModel):
    """One alert of an Alertmanager webhook."""

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = {}
    startsAt: AwareDatetime
    endsAt: AwareDatetime | None = None
    generatorURL: str = ""
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
    externalURL: str = ""
    truncatedAlerts: int = 0
    alerts: list[AlertmanagerAlert]


class GrafanaAlert(AlertmanagerAlert):
    """One alert of a Grafana webhook: Alertmanager's fields plus links and values."""

    silenceURL: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    values: dict[str, float | None] | None = None
    valueString: str = ""


class GrafanaWebhook(AlertmanagerWebhook):
    """Grafana unified alerting's webhook body (version "1")."""

    version: str = "1"
    orgId: int | None = None
    state: str = ""
    title: str = ""
    message: str = ""
    alerts: list[GrafanaAlert]


def _utc(moment: datetime) -> datetime:
    # Most senders already use UTC; skipping the conversion then is measurably cheaper.
    return moment if moment.utcoffset() == _ZERO else moment.astimezone(UTC)


def _end(moment: datetime | None) -> datetime | None:
    """Alertmanager marks "no end yet" with the zero time 0001-01-01T00:00:00Z."""
    if moment is None or moment.year <= 1:
        return None
    return _utc(moment)


def _event(source: Source, hook: AlertmanagerWebhook, alert: AlertmanagerAlert) -> AlertEvent:
    extra = {}
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
        starts_at=_utc(alert.startsAt),
        ends_at=_end(alert.endsAt),
        generator_url=alert.generatorURL,
        group_key=hook.groupKey,
        receiver=hook.receiver,
        external_url=hook.externalURL,
        **extra,
    )


def alertmanager_events(body: bytes) -> list[AlertEvent]:
    """Parse and normalize an Alertmanager webhook; raises pydantic.ValidationError."""
    hook = AlertmanagerWebhook.model_validate_json(body)
    return [_event("alertmanager", hook, alert) for alert in hook.alerts]


def grafana_events(body: bytes) -> list[AlertEvent]:
    """Parse and normalize a Grafana webhook; raises pydantic.ValidationError."""
    hook = GrafanaWebhook.model_validate_json(body)
    return [_event("grafana", hook, alert) for alert in hook.alerts]


class DeploymentEvent(BaseModel):
    """A deployment reported by CI/CD to /webhooks/deployments (our own contract: strict)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=253)
    name: str = Field(min_length=1, max_length=253)
    kind: WorkloadKind = "Deployment"
    cluster: str | None = Field(None, min_length=1, max_length=253)
    revision: str | int | None = None
    version: str = Field("", max_length=256)
    images: list[str] = Field(default_factory=list, max_length=50)
    started_at: AwareDatetime | None = None
    commit: str = Field("", max_length=256)
    author: str = Field("", max_length=256)
    url: str = Field("", max_length=2048)
