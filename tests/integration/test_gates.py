"""Gates for progressive delivery over HTTP, on real Redis (and a real Prometheus for the
verify queries): which alerts count, what the answers are, who may ask."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from config.policy import Policy
from core.records import Rollout, WorkloadRecord
from receiver.app import create_app
from tests import samples
from tests.secrets import GATE_TOKEN, WEBHOOK_TOKEN

pytestmark = pytest.mark.integration

GATE = "/api/v1/gates/shop/checkout"
ERROR_RATIO = 'backstop_test_error_ratio{workload="checkout"}'


def policy(mode: str = "dry-run", **defaults) -> Policy:
    return Policy.model_validate({"mode": mode, "defaults": {"min_firing": "0s", **defaults}})


@pytest.fixture
def gated(make_settings, webhook_headers):
    """An app whose checkout revision 3 started rolling out 10 minutes ago."""

    def build(policy_: Policy | None = None, **settings):
        app = create_app(make_settings(**settings), policy=policy_ or policy())
        web = app.test_client()
        answer = web.post(
            "/webhooks/deployments",
            headers=webhook_headers,
            json=samples.deployment_event(minutes_ago=10),
        )
        assert answer.status_code == 202
        return web

    return build


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def alert(web, headers, *, started: str, status="firing", fingerprint="f1", **labels):
    """Deliver one alert about shop/checkout that began at `started`."""
    body = samples.alertmanager(
        samples.am_alert(starts_at=started, status=status, fingerprint=fingerprint, **labels)
    )
    assert web.post("/webhooks/alertmanager", headers=headers, json=body).status_code == 202


def test_no_alert_since_the_revision_is_healthy(gated, webhook_headers):
    answer = gated().get(GATE, headers=webhook_headers)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["healthy"] is True and body["revision"] == "3"
    assert body["workload"]["key"] == "default/shop/Deployment/checkout"
    assert body["checks"]["verify"] == {"mode": "none", "detail": "no verify queries configured"}


def test_a_kill_switch_firing_since_the_revision_fails_the_gate(gated, webhook_headers):
    web = gated()
    started = ago(2)
    alert(web, webhook_headers, started=started, backstop_rollback="true")
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 412
    body = answer.get_json()
    assert body["healthy"] is False
    assert body["reasons"] == [
        "1 kill-switch alert(s) firing since revision 3 rolled out: CheckoutHigh5xx"
    ]
    [firing] = body["checks"]["kill_switches_firing"]
    assert firing["alertname"] == "CheckoutHigh5xx"
    # For Argo Rollouts: the same verdict in a 200 answer's body.
    in_body = web.get(f"{GATE}?verdict=body", headers=webhook_headers)
    assert in_body.status_code == 200 and in_body.get_json()["healthy"] is False
    # Resolved: the gate opens again.
    alert(web, webhook_headers, started=started, status="resolved", backstop_rollback="true")
    assert web.get(GATE, headers=webhook_headers).status_code == 200


def test_alerts_that_do_not_count(gated, webhook_headers):
    web = gated()
    # Began before revision 3 rolled out: about an older revision, must not block its fix.
    alert(web, webhook_headers, started=ago(30), fingerprint="old", backstop_rollback="true")
    # Not a kill switch.
    alert(web, webhook_headers, started=ago(2), fingerprint="warn")
    # Another workload's kill switch.
    alert(
        web,
        webhook_headers,
        started=ago(2),
        fingerprint="cart",
        deployment="cart",
        backstop_rollback="true",
    )
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 200, answer.get_json()
    checks = answer.get_json()["checks"]
    assert checks["kill_switches_firing"] == []
    assert [e["alertname"] for e in checks["firing_since_before_this_revision"]] == [
        "CheckoutHigh5xx"
    ]


def test_a_revision_being_rolled_back_fails_the_gate(gated, webhook_headers):
    web = gated(policy("enforce"))
    started = ago(2)
    alert(web, webhook_headers, started=started, backstop_rollback="true")
    alert(web, webhook_headers, started=started, status="resolved", backstop_rollback="true")
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 412
    body = answer.get_json()
    assert body["checks"]["rolling_back"] is not None
    assert body["reasons"] == [
        f"Backstop is rolling revision 3 back (decision {body['checks']['rolling_back']})"
    ]


def test_flagger_posts_and_every_credential_that_may_read(gated, webhook_headers, api_headers):
    web = gated(gate_token=GATE_TOKEN)
    flagger = {"name": "checkout", "namespace": "shop", "phase": "Progressing", "metadata": {}}
    assert web.post(GATE, headers=webhook_headers, json=flagger).status_code == 200
    assert web.get(GATE, headers=api_headers).status_code == 200
    assert web.get(GATE, auth=("backstop", WEBHOOK_TOKEN)).status_code == 200
    # The gate token, as Flagger sends it from a URL's user info (basic auth).
    assert web.post(GATE, auth=("backstop", GATE_TOKEN), json=flagger).status_code == 200
    # ... and it opens nothing else.
    assert web.get("/api/v1/alerts", auth=("backstop", GATE_TOKEN)).status_code == 401
    assert (
        web.post("/api/v1/automation/pause", auth=("backstop", GATE_TOKEN), json={}).status_code
        == 401
    )
    assert (
        web.post("/webhooks/alertmanager", auth=("backstop", GATE_TOKEN), json={})
    ).status_code == 401
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = web.get(GATE, headers=headers)
        assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthorized"
        assert web.post(GATE, headers=headers, json=flagger).status_code == 401


def test_what_the_gate_cannot_judge(gated, webhook_headers):
    web = gated()
    unknown = web.get("/api/v1/gates/shop/nothing", headers=webhook_headers)
    assert unknown.status_code == 404 and "no rollout of" in unknown.get_json()["error"]["message"]
    for query, code in (
        ("kind=Pod", "invalid_query"),
        ("verdict=maybe", "invalid_query"),
        ("cluster=elsewhere", "unknown_cluster"),
        ("service=nope", "not_found"),
    ):
        answer = web.get(f"{GATE}?{query}", headers=webhook_headers)
        assert 400 <= answer.status_code < 500
        assert answer.get_json()["error"]["code"] == code, query


def verified(**extra) -> Policy:
    query = {"name": "error_ratio", "query": ERROR_RATIO, "comparison": "<", "threshold": 0.01}
    return policy(verify={"queries": [query]}, **extra)


def test_verify_queries_are_evaluated_now(gated, webhook_headers, prometheus, exporter):
    exporter.set("backstop_test_error_ratio", 0.002, workload="checkout")
    prometheus.wait_for_value(ERROR_RATIO, lambda v: v == 0.002)
    web = gated(verified(), prometheus_url=prometheus.url)
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 200
    assert answer.get_json()["checks"]["verify"]["queries"]["error_ratio"]["values"] == [0.002]

    exporter.set("backstop_test_error_ratio", 0.2, workload="checkout")
    prometheus.wait_for_value(ERROR_RATIO, lambda v: v == 0.2)
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 412
    assert answer.get_json()["reasons"] == [
        "verify query error_ratio breaks its threshold: [0.2] < 0.01 is false"
    ]


def test_a_verify_query_without_data_or_prometheus_never_passes(
    gated, webhook_headers, prometheus, exporter
):
    silent = 'backstop_test_error_ratio{workload="nothing-here"}'
    query = {"name": "error_ratio", "query": silent, "comparison": "<", "threshold": 0.01}
    web = gated(policy(verify={"queries": [query]}), prometheus_url=prometheus.url)
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 412
    assert answer.get_json()["reasons"] == ["verify query error_ratio returned no data"]

    down = gated(verified(), prometheus_url="http://127.0.0.1:9")  # nothing listens there
    answer = down.get(GATE, headers=webhook_headers)
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "prometheus_unavailable"


# -- the judgment and the quarantine ------------------------------------------------------

ERRORS = 'backstop_test_errors{pod_template_hash="$hash"}'
JUDGED = {
    "mode": "dry-run",
    "defaults": {"min_firing": "0s"},
    "services": [
        {
            "name": "checkout",
            "match": {"deployment": "checkout"},
            "judgment": {
                "window": "8s",
                "step": "1s",
                "kpis": [{"name": "errors", "query": ERRORS, "min_samples": 3}],
            },
        }
    ],
}


@pytest.fixture
def judged_gate(make_settings, prometheus):
    """Checkout's revision 3 (pods h3) followed revision 2 (pods h2) 10 minutes ago."""
    app = create_app(
        make_settings(prometheus_url=prometheus.url), policy=Policy.model_validate(JUDGED)
    )
    store = app.extensions["backstop"].store
    workload = WorkloadRecord(
        cluster="default", namespace="shop", kind="Deployment", name="checkout"
    )
    for revision, minutes, previous in (("2", 30, "1"), ("3", 10, "2")):
        store.rollouts.record_observed(
            Rollout(
                workload=workload,
                revision=revision,
                previous_revision=previous,
                images=[f"shop/checkout:{revision}"],
                started_at=datetime.now(UTC) - timedelta(minutes=minutes),
                template_hash=f"h{revision}",
                sources=["watcher"],
            ),
            merge_window=timedelta(minutes=1),
        )
    return app.test_client(), store


def serving(prometheus, exporter, new: float, old: float) -> None:
    """Both revisions' pods serve, at these error ratios, for long enough to be judged."""
    exporter.set("backstop_test_errors", new, pod_template_hash="h3")
    exporter.set("backstop_test_errors", old, pod_template_hash="h2")
    prometheus.wait_for_value('backstop_test_errors{pod_template_hash="h2"}', lambda v: v == old)
    time.sleep(9)  # a window's worth of points on both sides


def test_a_revision_the_judgment_confirms_worse_fails_the_gate(
    judged_gate, webhook_headers, prometheus, exporter
):
    web, _ = judged_gate
    serving(prometheus, exporter, new=0.05, old=0.002)
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 412, answer.get_json()
    body = answer.get_json()
    assert body["reasons"] == [
        "the judgment confirms revision 3 is worse than revision 2 on errors"
    ]
    judgment = body["checks"]["judgment"]
    assert judgment["verdict"] == "confirmed" and judgment["against"] == "2"
    assert judgment["kpis"][0]["how"] == "side_by_side" and "series" not in judgment["kpis"][0]


def test_a_firing_kill_switch_the_revision_did_not_cause_leaves_the_gate_open(
    judged_gate, webhook_headers, prometheus, exporter
):
    web, _ = judged_gate
    alert(web, webhook_headers, started=ago(2), backstop_rollback="true")
    serving(prometheus, exporter, new=0.05, old=0.05)  # old and new pods fail alike
    answer = web.get(GATE, headers=webhook_headers)
    body = answer.get_json()
    assert answer.status_code == 200, body
    assert body["checks"]["judgment"]["verdict"] == "not_confirmed"
    assert body["checks"]["not_blamed_on_this_revision"] == [
        "1 kill-switch alert(s) firing since revision 3 rolled out: CheckoutHigh5xx"
    ]


def test_without_recorded_hashes_the_gate_keeps_to_its_timing_checks(gated, webhook_headers):
    web = gated(Policy.model_validate(JUDGED))  # revision 3 from CI: no pod hash
    alert(web, webhook_headers, started=ago(2), backstop_rollback="true")
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 412
    assert "not recorded" in answer.get_json()["checks"]["judgment"]["detail"]


def test_a_quarantined_image_fails_the_gate(judged_gate, webhook_headers):
    web, store = judged_gate
    store.quarantine.add(
        samples.quarantine(
            revision="3", images=["docker.io/shop/checkout:3"], ttl=timedelta(days=1)
        )
    )
    answer = web.get(GATE, headers=webhook_headers)
    assert answer.status_code == 412
    body = answer.get_json()
    assert body["reasons"] == [
        "shop/checkout:3 is quarantined: Backstop rolled it back (rollback rb-1)"
    ]
    assert body["checks"]["quarantined"][0]["rollback_id"] == "rb-1"
