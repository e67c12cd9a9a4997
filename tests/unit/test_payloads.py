"""Normalization of real-shaped Alertmanager and Grafana payloads into AlertEvents."""

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from receiver.payloads import alertmanager_events, grafana_events
from tests import samples


def parse_am(body: dict):
    return alertmanager_events(json.dumps(body).encode())


def test_firing_alert_maps_every_field():
    [event] = parse_am(samples.alertmanager(samples.am_alert()))
    assert event.source == "alertmanager"
    assert event.status == "firing"
    assert event.fingerprint == "a1b2c3d4e5f60718"
    assert event.labels["deployment"] == "checkout"
    assert event.annotations["summary"].startswith("5xx ratio")
    # Nanoseconds are truncated to microseconds; the zone is normalized to UTC.
    assert event.starts_at == datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
    assert event.ends_at is None  # the zero time means "still firing"
    assert event.generator_url.startswith("http://prometheus:9090/graph")
    assert event.group_key.startswith("{}/")
    assert event.receiver == "backstop"
    assert event.external_url == "http://alertmanager:9093"


def test_resolved_alert_has_an_end():
    [event] = parse_am(samples.alertmanager(samples.am_alert(status="resolved")))
    assert event.status == "resolved"
    assert event.ends_at == datetime(2026, 11, 26, 10, 20, tzinfo=UTC)


def test_mixed_batch_keeps_order_and_status():
    body = samples.alertmanager(
        samples.am_alert(fingerprint="1"),
        samples.am_alert(status="resolved", fingerprint="2"),
        samples.am_alert(fingerprint="3", region="eu-west-1"),
    )
    events = parse_am(body)
    assert [e.status for e in events] == ["firing", "resolved", "firing"]
    assert [e.fingerprint for e in events] == ["1", "2", "3"]
    assert events[2].labels["region"] == "eu-west-1"


def test_truncated_alerts_still_parse():
    events = parse_am(samples.alertmanager(samples.am_alert(), truncated=12))
    assert len(events) == 1


def test_unicode_labels_survive():
    body = samples.alertmanager(samples.am_alert(team="paiement-équipe", zone="東京"))
    [event] = parse_am(body)
    assert event.labels["zone"] == "東京"
    assert json.loads(json.dumps(event.to_record()))["labels"]["team"] == "paiement-équipe"


def test_missing_optional_fields_get_defaults_and_a_stable_fingerprint():
    body = {
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "X", "b": "2", "a": "1"},
                "startsAt": "2026-11-26T10:00:00Z",
            }
        ]
    }
    [first] = parse_am(body)
    body["alerts"][0]["labels"] = {"a": "1", "alertname": "X", "b": "2"}
    [second] = parse_am(body)
    assert first.annotations == {} and first.ends_at is None and first.generator_url == ""
    assert first.fingerprint == second.fingerprint != ""
    assert first.episode_id == second.episode_id


def test_unknown_vendor_fields_are_tolerated():
    body = samples.alertmanager(samples.am_alert())
    body["notification_reason"] = "repeat"
    body["routeLabels"] = {"x": "y"}
    body["alerts"][0]["somethingNew"] = {"nested": [1, 2]}
    assert len(parse_am(body)) == 1


def test_episode_is_fingerprint_plus_start_whatever_the_zone_spelling():
    utc = parse_am(samples.alertmanager(samples.am_alert(starts_at="2026-11-26T10:00:00Z")))[0]
    offset = parse_am(
        samples.alertmanager(samples.am_alert(starts_at="2026-11-26T12:00:00+02:00"))
    )[0]
    later = parse_am(samples.alertmanager(samples.am_alert(starts_at="2026-11-26T11:00:00Z")))[0]
    assert utc.episode_id == offset.episode_id
    assert utc.episode_id != later.episode_id


def test_grafana_alert_carries_links_and_values():
    [event] = grafana_events(json.dumps(samples.grafana()).encode())
    assert event.source == "grafana"
    assert event.dashboard_url == "https://grafana/d/abc"
    assert event.panel_url.endswith("viewPanel=4")
    assert event.silence_url.startswith("https://grafana/alerting/silence")
    assert event.values == {"A": 1.73, "B": 1.0, "C": None}
    assert event.value_string.startswith("[ var='A'")


def test_grafana_and_alertmanager_episodes_never_collide():
    am = parse_am(
        samples.alertmanager(samples.am_alert(fingerprint="f", starts_at="2026-01-01T00:00:00Z"))
    )[0]
    gr = grafana_events(
        json.dumps(
            samples.grafana(
                samples.grafana_alert(fingerprint="f", starts_at="2026-01-01T00:00:00Z")
            )
        ).encode()
    )[0]
    assert am.episode_id != gr.episode_id


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda a: a.update(status="pending"), "alerts.0.status"),
        (lambda a: a["labels"].update(count=3), "alerts.0.labels.count"),
        (lambda a: a.update(startsAt="2026-11-26T10:00:00"), "alerts.0.startsAt"),
        (lambda a: a.pop("labels"), "alerts.0.labels"),
        (lambda a: a.update(fingerprint="x" * 300), "alerts.0.fingerprint"),
    ],
)
def test_schema_errors_name_the_field(mutate, path):
    body = samples.alertmanager(samples.am_alert())
    mutate(body["alerts"][0])
    with pytest.raises(ValidationError) as caught:
        parse_am(body)
    paths = {".".join(map(str, e["loc"])) for e in caught.value.errors()}
    assert path in paths


def test_alerts_list_is_required():
    with pytest.raises(ValidationError):
        parse_am({"version": "4"})
