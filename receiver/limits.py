"""Limits on what one webhook may bring in, so that the store is bounded in bytes.

The store keeps a bounded number of records (episodes, events, decisions); these limits
bound each record's size. Per webhook: at most BACKSTOP_MAX_ALERTS_PER_WEBHOOK alerts (413
beyond). Per alert, BACKSTOP_MAX_ALERT_BYTES (UTF-8) for everything it carries:

- labels are an alert's identity, so they are never altered: more than
  BACKSTOP_MAX_ALERT_LABELS labels, or labels over half the byte budget, are a 400;
- the rest (the webhook's group key, receiver and external URL, the generator, dashboard,
  panel and silence URLs, Grafana's values, the annotations) fills what the labels leave,
  in that order: a link that does not fit is dropped whole (a cut link is a broken link), an
  annotation is cut with TRUNCATED at its end, and the annotation `backstop_truncated` says
  how many bytes went. The alert itself is always kept: Alertmanager does not resend a 4xx.
"""

import dataclasses
import operator
import threading

from config.settings import Settings
from core.models import AlertEvent
from receiver.errors import ApiError

TRUNCATED = "…[truncated by Backstop]"
MARKER_ANNOTATION = "backstop_truncated"
_LINKS = (
    "group_key",
    "receiver",
    "external_url",
    "generator_url",
    "dashboard_url",
    "panel_url",
    "silence_url",
    "value_string",
)
_VALUE_BYTES = 8  # a number of Grafana's values, counted like a float64
_links = operator.attrgetter(*_LINKS)


def bounded(events: list[AlertEvent], settings: Settings) -> list[AlertEvent]:
    """The events within the limits (oversized content cut); ApiError 413/400 otherwise."""
    limit = settings.max_alerts_per_webhook
    if len(events) > limit:
        raise ApiError(
            413,
            "too_many_alerts",
            f"{len(events)} alerts in one webhook; at most {limit} "
            "(set max_alerts in Alertmanager's webhook_config, maxAlerts in Grafana's)",
        )
    budget, most = settings.max_alert_bytes, settings.max_alert_labels
    found = []
    for index, event in enumerate(events):
        checked = _CHECKED.get(id(event))
        if checked and checked[0] is event and checked[1] == budget and checked[2] == most:
            found.append(checked[3])
        else:
            found.append(_CHECKED.add(event, budget, most, _bounded(index, event, settings)))
    return found


class _Checked:
    """Events within the limits lately, by identity, with what the limits made of them:
    the receiver reuses the AlertEvent of an alert it saw lately (receiver/fastpath.py,
    payloads.py), so a repeated alert is not measured again. Each entry holds its event,
    so no other object can take its id while the entry lives. Bounded; the oldest go first.
    An event over a limit that is an error (400) is not kept: it is refused every time."""

    def __init__(self, size: int):
        self.size = size
        self.seen: dict[int, tuple[AlertEvent, int, int, AlertEvent]] = {}
        self.get = self.seen.get
        self.lock = threading.Lock()  # gthread: evicting while another thread adds raises

    def add(self, event: AlertEvent, budget: int, most: int, fitted: AlertEvent) -> AlertEvent:
        """Remember `fitted` as what the limits `budget` and `most` make of `event`."""
        with self.lock:
            self.seen[id(event)] = (event, budget, most, fitted)
            if len(self.seen) > self.size:
                self.seen.pop(next(iter(self.seen)), None)
        return fitted


_CHECKED = _Checked(5_000)


def _bounded(index: int, event: AlertEvent, settings: Settings) -> AlertEvent:
    budget, most = settings.max_alert_bytes, settings.max_alert_labels
    # Fast path, the usual case: even at 4 bytes a character everything fits.
    small = len(event.labels) <= most and len(event.annotations) <= most
    if small and 4 * _chars(event) <= budget:
        return event
    _check_labels(index, event, settings)
    return _fit(event, budget - _pairs_bytes(event.labels), settings.max_alert_labels)


def _check_labels(index: int, event: AlertEvent, settings: Settings) -> None:
    """Labels are identity: too many or too large is the sender's error (400)."""
    path = f"alerts.{index}.labels"
    if len(event.labels) > settings.max_alert_labels:
        message = f"{len(event.labels)} labels; at most {settings.max_alert_labels}"
        raise _invalid(path, message)
    size, most = _pairs_bytes(event.labels), settings.max_alert_bytes // 2
    if size > most:
        raise _invalid(path, f"labels take {size} bytes; at most {most}")


def _fit(event: AlertEvent, room: int, max_annotations: int) -> AlertEvent:
    """Keep what fits in `room` bytes, in the module's order; count what was cut."""
    changes: dict = {}
    cut = 0
    for name in _LINKS:
        value = getattr(event, name)
        size = _bytes(value)
        if size <= room:
            room -= size
        else:
            changes[name], cut = "", cut + size
    values = {}
    for ref, number in event.values.items():
        size = _bytes(ref) + _VALUE_BYTES
        if size <= room:
            values[ref], room = number, room - size
        else:
            cut += size
    if len(values) != len(event.values):
        changes["values"] = values
    annotations, lost = _fit_annotations(event.annotations, room, max_annotations)
    cut += lost
    if not cut:
        return event
    annotations[MARKER_ANNOTATION] = f"{cut} bytes over BACKSTOP_MAX_ALERT_BYTES dropped"
    return dataclasses.replace(event, annotations=annotations, **changes)


def _fit_annotations(
    annotations: dict[str, str], room: int, most: int
) -> tuple[dict[str, str], int]:
    """The annotations that fit in `room` (the last one cut with TRUNCATED), and the bytes
    that did not."""
    kept: dict[str, str] = {}
    lost = 0
    marker = _bytes(TRUNCATED)
    for name, value in annotations.items():
        size = _bytes(name) + _bytes(value)
        if len(kept) < most and size <= room:
            kept[name], room = value, room - size
            continue
        space = room - _bytes(name) - marker
        if len(kept) < most and space > 0:
            kept[name] = _cut(value, space) + TRUNCATED
            lost += size - _bytes(name) - space
            room = 0
        else:
            lost += size
    return kept, lost


def _cut(text: str, size: int) -> str:
    """The longest prefix of `text` of at most `size` UTF-8 bytes."""
    return text.encode(errors="surrogatepass")[:size].decode(errors="ignore")


def _chars(event: AlertEvent) -> int:
    """Characters of everything the byte budget covers (bytes <= 4 x characters)."""
    labels, annotations = event.labels, event.annotations
    return (
        sum(map(len, _links(event)))
        + sum(map(len, event.values))
        + _VALUE_BYTES * len(event.values)
        + sum(map(len, labels))
        + sum(map(len, labels.values()))
        + sum(map(len, annotations))
        + sum(map(len, annotations.values()))
    )


def _pairs_bytes(pairs: dict[str, str]) -> int:
    return sum(_bytes(k) + _bytes(v) for k, v in pairs.items())


def _bytes(text: str) -> int:
    return len(text.encode(errors="surrogatepass"))


def _invalid(path: str, message: str) -> ApiError:
    return ApiError(
        400,
        "invalid_payload",
        f"{path}: {message} (BACKSTOP_MAX_ALERT_LABELS, BACKSTOP_MAX_ALERT_BYTES)",
        details=[{"path": path, "message": message}],
    )
