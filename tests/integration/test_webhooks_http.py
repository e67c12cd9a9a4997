"""The webhook and API answers of docs/api.md, against a real Redis."""

import json
import logging
import re
import time

import pytest

from config.policy import Policy
from receiver.answers import WebhookAnswer
from receiver.app import StartupError, create_app
from receiver.auth import grafana_signature
from tests import samples
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN

AM = "/webhooks/alertmanager"
GRAFANA = "/webhooks/grafana"


def post(client, path, body, headers, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    kwargs.setdefault("content_type", "application/json")
    return client.post(path, data=data, headers=headers, **kwargs)


def assert_envelope(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    return error


def test_accepted_then_duplicate(client, webhook_headers):
    body = samples.alertmanager(samples.am_alert(), samples.am_alert(fingerprint="other"))
    first = post(client, AM, body, webhook_headers)
    assert first.status_code == 202
    answer = first.get_json()
    assert (answer["accepted"], answer["duplicates"]) == (2, 0)
    assert answer["request_id"] == first.headers["X-Request-Id"]
    # No service and no backstop_rollback label: recorded, and skipped with its reason.
    assert [d["reason"] for d in answer["decisions"]] == ["not_kill_switch"] * 2
    # Built as a plain dict on the hot path: still exactly the documented answer.
    assert WebhookAnswer.model_validate(answer).model_dump(mode="json") == answer
    again = post(client, AM, body, webhook_headers).get_json()
    assert (again["accepted"], again["duplicates"]) == (0, 2)


def test_grafana_webhook_is_accepted(client, webhook_headers):
    response = post(client, GRAFANA, samples.grafana(), webhook_headers)
    assert response.status_code == 202
    assert response.get_json()["accepted"] == 1


def test_basic_auth_as_alertmanager_sends_it(client):
    response = post(client, AM, samples.alertmanager(), {}, auth=("backstop", WEBHOOK_TOKEN))
    assert response.status_code == 202


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_unauthenticated_webhooks_get_401_and_store_nothing(client, redis_client, headers):
    response = post(client, AM, samples.alertmanager(), headers)
    assert_envelope(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert redis_client.dbsize() == 0


def test_not_json_is_415(client, webhook_headers, redis_client):
    response = post(client, AM, "alerts=1", webhook_headers, content_type="text/plain")
    assert_envelope(response, 415, "unsupported_media_type")
    assert redis_client.dbsize() == 0


def test_oversized_body_is_413(make_settings, webhook_headers, redis_client):
    client = create_app(make_settings(max_body_bytes=2048), policy=Policy()).test_client()
    big = samples.alertmanager(*(samples.am_alert(fingerprint=str(i)) for i in range(20)))
    assert_envelope(post(client, AM, big, webhook_headers), 413, "payload_too_large")
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"",
        b"[" * 100_000,
        b'{"alerts": [}',
        '{"a": "\udcff"}'.encode("utf-8", "surrogatepass"),
        b"\xff\xfe",
    ],
)
def test_malformed_json_is_400(client, webhook_headers, redis_client, raw):
    assert_envelope(post(client, AM, raw, webhook_headers), 400, "invalid_json")
    assert redis_client.dbsize() == 0


def test_schema_errors_are_400_with_the_field_path(client, webhook_headers, redis_client):
    body = samples.alertmanager(samples.am_alert(), samples.am_alert(fingerprint="2"))
    body["alerts"][1]["startsAt"] = "yesterday"
    error = assert_envelope(post(client, AM, body, webhook_headers), 400, "invalid_payload")
    assert error["message"].startswith("alerts.1.startsAt:")
    assert error["details"][0]["path"] == "alerts.1.startsAt"
    # The valid first alert was not stored either: a request is all or nothing.
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize("body", [[], "a string", 7, None, {"alerts": {"a": 1}}])
def test_wrong_top_level_shapes_are_400(client, webhook_headers, body):
    assert post(client, AM, json.dumps(body), webhook_headers).status_code == 400


def test_grafana_signature_is_required_when_configured(make_settings, webhook_headers):
    client = create_app(make_settings(grafana_hmac_secret="s3"), policy=Policy()).test_client()
    body = json.dumps(samples.grafana()).encode()
    assert_envelope(post(client, GRAFANA, body, webhook_headers), 401, "unauthorized")
    ts = str(int(time.time()))
    signed = {
        **webhook_headers,
        "X-Grafana-Alerting-Signature": grafana_signature("s3", body, ts),
        "X-Grafana-Alerting-Signature-Timestamp": ts,
    }
    assert post(client, GRAFANA, body, signed).status_code == 202
    stale = str(int(time.time()) - 600)
    signed.update(
        {
            "X-Grafana-Alerting-Signature": grafana_signature("s3", body, stale),
            "X-Grafana-Alerting-Signature-Timestamp": stale,
        }
    )
    assert_envelope(post(client, GRAFANA, body, signed), 401, "unauthorized")


def test_unknown_routes_and_methods_use_the_envelope(client, webhook_headers):
    assert_envelope(client.get("/nope"), 404, "not_found")
    response = client.get(AM, headers=webhook_headers)
    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_request_id_is_echoed_when_sane(client, webhook_headers):
    mine = post(client, AM, samples.alertmanager(), {**webhook_headers, "X-Request-Id": "am-42"})
    assert mine.headers["X-Request-Id"] == "am-42" == mine.get_json()["request_id"]
    odd = post(client, AM, samples.alertmanager(), {**webhook_headers, "X-Request-Id": "a b\x01"})
    assert odd.headers["X-Request-Id"] != "a b\x01"
    # A fresh id is 32 hex digits, as uuid4().hex was, and another for every request.
    fresh = {post(client, AM, samples.alertmanager(), webhook_headers).headers["X-Request-Id"]}
    fresh.add(odd.headers["X-Request-Id"])
    assert len(fresh) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in fresh)


def test_redis_down_is_503_never_500(make_settings, webhook_headers):
    from cli.localredis import free_port

    dead = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(dead, policy=Policy()).test_client()
    response = post(client, AM, samples.alertmanager(), webhook_headers)
    assert_envelope(response, 503, "unavailable")
    assert response.headers["Retry-After"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["redis"].startswith("unavail")


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["status"] == "ready"


def test_metrics_count_requests_alerts_and_duplicates(client, webhook_headers):
    post(client, AM, samples.alertmanager(), webhook_headers)
    post(client, AM, samples.alertmanager(), webhook_headers)
    post(client, AM, samples.alertmanager(), {})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'backstop_webhook_requests_total{code="202",source="alertmanager"}' in text
    assert 'backstop_webhook_requests_total{code="401",source="alertmanager"}' in text
    assert 'backstop_alerts_received_total{source="alertmanager",status="firing"}' in text
    assert 'backstop_alert_duplicates_total{source="alertmanager"}' in text
    assert "backstop_webhook_duration_seconds_bucket" in text


def test_metrics_show_backstops_state_from_redis(client, webhook_headers, api_headers):
    from prometheus_client.parser import text_string_to_metric_families

    client.post("/api/v1/automation/pause", json={"reason": "x"}, headers=api_headers)
    post(client, AM, samples.alertmanager(), webhook_headers)
    text = client.get("/metrics").get_data(as_text=True)
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values[("backstop_redis_up", ())] == 1
    assert values[("backstop_automation_paused", ())] == 1
    assert values[("backstop_circuit_open", ())] == 0
    assert values[("backstop_decisions_last_hour", (("outcome", "skipped"),))] == 1
    assert values[("backstop_rollbacks_last_hour", (("status", "running"),))] == 0
    assert values[("backstop_queue_jobs", (("queue", "rollbacks"), ("registry", "failed")))] == 0
    assert values[("backstop_rq_workers", ())] == 0
    # No watcher has said it is alive: the age is absent, for an absent() alert.
    assert not any(name == "backstop_watcher_heartbeat_age_seconds" for name, _ in values)


def test_metrics_say_when_redis_is_down(make_settings):
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0"), policy=Policy())
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200 and "backstop_redis_up 0.0" in answer.get_data(as_text=True)


def test_one_log_line_per_webhook_without_secrets_or_bodies(client, webhook_headers, caplog):
    logger = logging.getLogger("backstop")
    logger.addHandler(caplog.handler)
    try:
        body = samples.alertmanager(samples.am_alert(secret_label="do-not-log-me"))
        post(client, AM, body, webhook_headers)
        post(client, AM, body, {"Authorization": "Bearer wrong-token-value"})
    finally:
        logger.removeHandler(caplog.handler)
    records = [r for r in caplog.records if r.getMessage() == "webhook"]
    assert [r.fields["status"] for r in records] == [202, 401]
    assert records[0].fields["accepted"] == 1 and records[0].fields["duration_ms"] >= 0
    text = caplog.text + json.dumps([r.fields for r in records])
    for secret in (WEBHOOK_TOKEN, "wrong-token-value", "do-not-log-me"):
        assert secret not in text


def test_alerts_api_lists_recent_episodes(client, webhook_headers, api_headers):
    post(client, AM, samples.alertmanager(samples.am_alert(fingerprint="a")), webhook_headers)
    post(client, AM, samples.alertmanager(samples.am_alert(fingerprint="b")), webhook_headers)
    post(
        client,
        AM,
        samples.alertmanager(samples.am_alert(fingerprint="a", status="resolved")),
        webhook_headers,
    )
    everything = client.get("/api/v1/alerts", headers=api_headers).get_json()["alerts"]
    assert len(everything) == 2
    resolved = client.get("/api/v1/alerts?status=resolved", headers=api_headers).get_json()
    [episode] = resolved["alerts"]
    assert episode["status"] == "resolved" and episode["notifications"] == 2
    assert episode["labels"]["deployment"] == "checkout"
    limited = client.get("/api/v1/alerts?limit=1", headers=api_headers).get_json()["alerts"]
    assert len(limited) == 1


@pytest.mark.parametrize("query", ["status=pending", "limit=0", "limit=abc", "limit=100000"])
def test_alerts_api_rejects_bad_queries(client, api_headers, query):
    assert_envelope(
        client.get(f"/api/v1/alerts?{query}", headers=api_headers), 400, "invalid_query"
    )


def test_api_needs_its_own_token(client, webhook_headers):
    assert_envelope(client.get("/api/v1/alerts"), 401, "unauthorized")
    assert client.get("/api/v1/alerts", headers=webhook_headers).status_code == 401
    ok = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert ok.status_code == 200


def test_refuses_to_start_without_credentials(make_settings):
    with pytest.raises(StartupError, match="BACKSTOP_WEBHOOK_TOKEN"):
        create_app(make_settings(webhook_token=None), policy=Policy())
    with pytest.raises(StartupError, match="BACKSTOP_API_TOKEN"):
        create_app(make_settings(api_token=None), policy=Policy())


def test_insecure_mode_is_explicit(make_settings):
    app = create_app(
        make_settings(webhook_token=None, api_token=None, insecure=True), policy=Policy()
    )
    response = post(app.test_client(), AM, samples.alertmanager(), {})
    assert response.status_code == 202
