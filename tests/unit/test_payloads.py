"""Normalization of real-shaped Alertmanager and Grafana payloads into AlertEvents."""

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from receiver.payloads import _RecentBodies, alertmanager_events, grafana_events
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
        # Strict as the OpenAPI document: not a number of seconds (make fuzz found these).
        (lambda a: a.update(startsAt=1764151200), "alerts.0.startsAt"),
        (lambda a: a.update(endsAt=0), "alerts.0.endsAt"),
    ],
)
def test_schema_errors_name_the_field(mutate, path):
    body = samples.alertmanager(samples.am_alert())
    mutate(body["alerts"][0])
    with pytest.raises(ValidationError) as caught:
        parse_am(body)
    paths = {".".join(map(str, e["loc"])) for e in caught.value.errors()}
    assert path in paths


@pytest.mark.parametrize("value", [True, False, 1.0])
def test_integers_are_integers_not_booleans(value):
    with pytest.raises(ValidationError):
        parse_am({**samples.alertmanager(samples.am_alert()), "truncatedAlerts": value})
    with pytest.raises(ValidationError):
        grafana_events(
            json.dumps({**samples.grafana(samples.grafana_alert()), "orgId": value}).encode()
        )


def test_alerts_list_is_required():
    with pytest.raises(ValidationError):
        parse_am({"version": "4"})


class Parses:
    """A parse function that counts its calls (the cache's own interface)."""

    def __init__(self, error: Exception | None = None):
        self.calls, self.error = 0, error

    def __call__(self, body: bytes):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return [body.decode()]


def test_a_body_seen_again_byte_for_byte_is_not_parsed_again():
    bodies, parse = _RecentBodies(3, 100), Parses()
    first = bodies.events("alertmanager", b'{"a": 1}', parse)
    again = bodies.events("alertmanager", b'{"a": 1}', parse)
    assert first == again == ['{"a": 1}'] and parse.calls == 1
    again.append("changed by a caller")  # each caller gets its own list
    assert bodies.events("alertmanager", b'{"a": 1}', parse) == ['{"a": 1}']
    bodies.events("grafana", b'{"a": 1}', parse)  # the same bytes from another source
    bodies.events("alertmanager", b'{"a": 1} ', parse)  # one more byte: another body
    assert parse.calls == 3


def test_the_body_cache_is_bounded_in_entries_and_body_size():
    bodies, parse = _RecentBodies(2, 10), Parses()
    for body in (b"1", b"2", b"3"):
        bodies.events("alertmanager", body, parse)
    assert parse.calls == 3
    bodies.events("alertmanager", b"3", parse)
    assert parse.calls == 3  # kept
    bodies.events("alertmanager", b"1", parse)
    assert parse.calls == 4  # the oldest went
    for _ in range(2):
        bodies.events("alertmanager", b"x" * 11, parse)  # too big to keep
    assert parse.calls == 6


def test_an_invalid_body_is_refused_every_time():
    bodies = _RecentBodies(3, 100)
    parse = Parses(ValueError("invalid"))
    for _ in range(2):
        with pytest.raises(ValueError, match="invalid"):
            bodies.events("alertmanager", b"{", parse)
    assert parse.calls == 2 and bodies.seen == {}


def test_a_repeated_webhook_gives_equal_events_and_an_invalid_one_still_fails():
    body = json.dumps(samples.alertmanager(samples.am_alert())).encode()
    assert alertmanager_events(body) == alertmanager_events(bytes(body))
    bad = json.dumps(samples.alertmanager(samples.am_alert(status="pending"))).encode()
    for _ in range(2):
        with pytest.raises(ValidationError):
            alertmanager_events(bad)


def test_a_deployments_start_is_a_timestamp_string_not_a_number():
    from receiver.payloads import DeploymentEvent

    event = {"namespace": "shop", "name": "checkout", "started_at": "2026-11-26T10:00:00Z"}
    assert DeploymentEvent.model_validate_json(json.dumps(event)).started_at.year == 2026
    with pytest.raises(ValidationError):
        DeploymentEvent.model_validate_json(json.dumps({**event, "started_at": 0}))
    with pytest.raises(ValidationError):
        DeploymentEvent.model_validate_json(json.dumps({**event, "revision": False}))


def test_grafana_values_are_numbers_not_booleans():
    body = samples.grafana(samples.grafana_alert())
    body["alerts"][0]["values"] = {"B": False}
    with pytest.raises(ValidationError):
        grafana_events(json.dumps(body).encode())
