"""One webhook must not become thousands of jobs or megabytes: limits per webhook and per
alert, coalesced pages (docs/api.md, docs/decisions.md; R5)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from config.policy import Policy
from config.settings import Settings
from core import queues
from core.integrations.pagerduty import Pager
from receiver.app import create_app
from receiver.limits import MARKER_ANNOTATION, TRUNCATED
from receiver.state import EXTENSION
from tests import samples
from tests.conftest import WEBHOOK_TOKEN
from workers.incidents import Notifier

AM = "/webhooks/alertmanager"
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
STARTS = (datetime.now(UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")


def alert(index: int, **labels) -> dict:
    """A kill switch about checkout (or the workload `labels` name), its own episode."""
    return {
        "status": "firing",
        "labels": {
            "alertname": "CheckoutHigh5xx",
            "namespace": "shop",
            "deployment": "checkout",
            "backstop_rollback": "true",
            **labels,
        },
        "annotations": {"summary": "5xx above 1%"},
        "startsAt": STARTS,
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": f"fp{index}",
    }


def send(client, alerts: list[dict]):
    body = json.dumps({"version": "4", "status": "firing", "alerts": alerts})
    return client.post(AM, data=body, content_type="application/json", headers=HEADERS)


def page_jobs(redis_client) -> list:
    incidents = queues.queue(redis_client, queues.INCIDENTS)
    return [incidents.fetch_job(i) for i in incidents.job_ids if i.startswith("page-")]


@pytest.fixture
def make_client(make_settings):
    def build(policy: dict | None = None, **settings):
        app = create_app(make_settings(**settings), policy=Policy.model_validate(policy or {}))
        return app.test_client()

    return build


# -- alerts per webhook ----------------------------------------------------------------------


def test_more_alerts_than_the_default_limit_is_413_and_stores_nothing(client, redis_client):
    response = send(client, [alert(i) for i in range(1001)])
    assert response.status_code == 413, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "too_many_alerts" and "max_alerts" in error["message"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert redis_client.dbsize() == 0


def test_the_alert_limit_is_a_setting(make_client, redis_client):
    client = make_client(max_alerts_per_webhook=3)
    assert send(client, [alert(i) for i in range(4)]).status_code == 413
    assert redis_client.dbsize() == 0
    assert send(client, [alert(i) for i in range(3)]).status_code == 202


def test_settings_document_their_environment_names(monkeypatch):
    monkeypatch.setenv("BACKSTOP_MAX_ALERTS_PER_WEBHOOK", "50")
    monkeypatch.setenv("BACKSTOP_MAX_ALERT_BYTES", "4096")
    monkeypatch.setenv("BACKSTOP_MAX_ALERT_LABELS", "32")
    settings = Settings()
    assert (settings.max_alerts_per_webhook, settings.max_alert_bytes) == (50, 4096)
    assert settings.max_alert_labels == 32


# -- what one alert may bring in ------------------------------------------------------------


def test_too_many_labels_is_400_and_stores_nothing(client, redis_client):
    many = {f"label{i}": "x" for i in range(65)}
    response = send(client, [alert(0), alert(1, **many)])
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_payload" and error["details"][0]["path"] == "alerts.1.labels"
    assert redis_client.dbsize() == 0


def test_labels_over_half_the_alert_budget_are_400(client, redis_client):
    response = send(client, [alert(0, pod="p" * 4100)])
    assert response.status_code == 400
    assert "labels take" in response.get_json()["error"]["message"]
    assert redis_client.dbsize() == 0


def test_oversized_annotations_and_links_are_cut_with_a_marker(app, client):
    big = alert(0)
    big["annotations"] = {"summary": "5xx above 1%", "description": "d" * 20_000}
    big["generatorURL"] = "http://prometheus/graph?g0.expr=" + "x" * 10_000
    answer = send(client, [big])
    assert answer.status_code == 202
    [decision] = answer.get_json()["decisions"]
    assert decision["reason"] == "no_recent_deployment"  # the alert is kept and decided
    episode = app.extensions[EXTENSION].store.episodes.episode(decision["id"])
    annotations = episode.event["annotations"]
    assert annotations["summary"] == "5xx above 1%"
    assert annotations["description"].endswith(TRUNCATED)
    assert "dropped" in annotations[MARKER_ANNOTATION]
    assert episode.event["generator_url"] == ""  # a cut link is a broken link: dropped
    stored = json.dumps(episode.event, ensure_ascii=False).encode()
    assert len(stored) <= 8192 + 1024  # the budget, plus field names and fixed fields


def test_an_alert_within_the_budget_is_kept_as_it_is(app, client):
    ordinary = alert(0)
    ordinary["annotations"] = {"description": "é" * 1500}  # 3,000 bytes, 1,500 characters
    [decision] = send(client, [ordinary]).get_json()["decisions"]
    episode = app.extensions[EXTENSION].store.episodes.episode(decision["id"])
    assert episode.event["annotations"] == {"description": "é" * 1500}


# -- coalesced pages ------------------------------------------------------------------------


def test_pages_coalesce_per_workload_and_reason(make_client, redis_client, pagerduty_server):
    client = make_client()
    answer = send(client, [alert(i) for i in range(300)]).get_json()
    assert [d["reason"] for d in answer["decisions"]] == ["no_recent_deployment"] * 300
    [job] = page_jobs(redis_client)
    group = job.kwargs["group"]
    assert job.kwargs["decision_id"] == answer["decisions"][0]["id"]
    assert group.startswith("no_recent_deployment-")
    # The page says how many decisions it covers, under a dedup key that is the group's.
    state = client.application.extensions[EXTENSION]
    pager = Pager(
        pagerduty_server.routing_key,
        base_url=pagerduty_server.url,
        ca_file=str(pagerduty_server.ca_path),
    )
    notifier = Notifier(state.store, state.policy, state.settings, None, pager, None)
    incident = notifier.page_decision(job.kwargs["decision_id"], group=group)
    assert incident.pagerduty.state == "delivered"
    [event] = pagerduty_server.events
    assert event["dedup_key"] == f"backstop-page-{group}"
    assert "+299 more decisions like it" in event["payload"]["summary"]
    assert event["payload"]["custom_details"]["decisions_covered"] == 300
    # Another reason about the same workload is another page.
    other = alert(999, cluster="elsewhere")
    assert send(client, [other]).get_json()["decisions"][0]["reason"] == "unknown_cluster"
    assert len(page_jobs(redis_client)) == 2


def test_a_flood_about_distinct_workloads_pages_a_bounded_number_of_times(
    make_client, redis_client
):
    client = make_client({"incidents": {"pagerduty": {"max_pages_per_window": 5}}})
    answer = send(client, [alert(i, deployment=f"svc{i}") for i in range(300)]).get_json()
    assert len(answer["decisions"]) == 300
    jobs = page_jobs(redis_client)
    assert len(jobs) == 5 + 1  # five workloads, then one page for the rest of the window
    [overflow] = [job for job in jobs if "-overflow-" in job.kwargs["group"]]
    state = client.application.extensions[EXTENSION]
    assert state.store.pages.get(overflow.kwargs["group"]).count == 295


def test_decisions_without_a_guarded_workload_coalesce_per_cluster_and_namespace(
    make_client, redis_client
):
    client = make_client()
    elsewhere = [alert(i, cluster="elsewhere", deployment=f"svc{i}") for i in range(50)]
    other_namespace = [
        alert(100 + i, cluster="elsewhere", namespace="web", deployment=f"svc{i}")
        for i in range(10)
    ]
    reasons = {
        d["reason"] for d in send(client, elsewhere + other_namespace).get_json()["decisions"]
    }
    assert reasons == {"unknown_cluster"}
    assert len(page_jobs(redis_client)) == 2


def test_grafana_values_and_links_count_toward_the_alert_budget(app, client):
    hostile = samples.grafana_alert(fingerprint="g1", backstop_rollback="true")
    hostile["values"] = {f"R{i}": float(i) for i in range(2000)}
    hostile["silenceURL"] = "https://grafana/alerting/silence/new?" + "m" * 9000
    body = json.dumps(samples.grafana(hostile))
    response = client.post(
        "/webhooks/grafana", data=body, content_type="application/json", headers=HEADERS
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    [decision] = response.get_json()["decisions"]
    event = app.extensions[EXTENSION].store.episodes.episode(decision["id"]).event
    assert event["silence_url"] == "" and event["dashboard_url"] == "https://grafana/d/abc"
    assert 0 < len(event["values"]) < 2000
    assert MARKER_ANNOTATION in event["annotations"]
    assert len(json.dumps(event).encode()) <= 8192 + 16 * len(event["values"]) + 1024
