"""Incidents from real rollbacks: Jira tickets and PagerDuty events, exactly once."""

import json
from datetime import timedelta

import pytest

from config.policy import Policy
from config.settings import Settings
from core.errors import TransientError
from core.intake import flush_all
from core.integrations.jira import Tickets
from core.integrations.pagerduty import Pager
from core.integrations.prometheus import Prometheus
from core.models import Workload
from core.records import Rollback, RollbackStep, utcnow
from core.store import Store
from core.store.rollouts import rollout_for
from receiver.app import create_app
from tests import samples
from tests.secrets import WEBHOOK_TOKEN
from tests.unit.test_judgment_snapshot import KPI, NODATA
from tests.unit.test_wiki_markup import live_markup, records
from tests.workloads import FAST, bad_release
from workers import ticket
from workers.incidents import Notifier, incident_key

pytestmark = pytest.mark.integration

ERROR_RATIO = 'backstop_test_error_ratio{workload="checkout"}'
PNG = b"\x89PNG\r\n\x1a\n"


def policy(**incidents) -> dict:
    verify = {
        "queries": [
            {
                "name": "5xx ratio",
                "query": ERROR_RATIO,
                "comparison": "<",
                "threshold": 0.01,
                "unit": "ratio",
            }
        ],
        "interval": "1s",
        "window": "2s",
    }
    return {
        **FAST,
        "defaults": {**FAST["defaults"], "verify": verify},
        "incidents": {"jira": {"project": "OPS"}, **incidents},
    }


@pytest.fixture
def rolled_back(make_stack, prometheus, exporter):
    """A verified rollback of a bad Deployment, with a real Prometheus behind it."""
    exporter.set("backstop_test_error_ratio", 0.001, workload="checkout")
    prometheus.wait_for_value(ERROR_RATIO, lambda v: v == 0.001)
    stack = make_stack(policy())
    workload = bad_release(stack)
    decision = stack.alert(workload)
    rollback = stack.roll_back(decision, stack.executor(prometheus=Prometheus(prometheus.url)))
    assert rollback.status == "verified"
    return stack, rollback


def notifier(stack, prometheus, jira=None, pagerduty=None, public_url="https://backstop.example"):
    settings = Settings(
        public_url=public_url, api_token="t", webhook_token="w", jira_url=jira.url if jira else None
    )
    tickets = Tickets(url=jira.url, user=jira.email, token=jira.api_token) if jira else None
    pager = (
        Pager(pagerduty.routing_key, base_url=pagerduty.url, ca_file=str(pagerduty.ca_path))
        if pagerduty
        else None
    )
    return Notifier(stack.store, stack.policy, settings, tickets, pager, Prometheus(prometheus.url))


def test_a_rollback_becomes_one_ticket_and_one_paged_incident(
    rolled_back, prometheus, jira_server, pagerduty_server
):
    stack, rollback = rolled_back
    incident = notifier(stack, prometheus, jira_server, pagerduty_server).file_rollback(rollback.id)
    assert (incident.jira.state, incident.pagerduty.state) == ("delivered", "delivered")
    [issue] = jira_server.issues.values()
    key = incident_key(rollback.workload.workload().key, "2")
    assert issue.labels == ["backstop", key] and incident.jira.ref == issue.key
    assert "rollback 2 -> 3" in issue.fields["summary"]
    description = issue.fields["description"]
    for section in (
        "Timeline",
        "Deployment",
        "Pre-flight",
        "Rollback steps",
        "Verification",
        "Root-cause checklist",
    ):
        assert f"h3. {section}" in description
    files = {a.filename: a for a in issue.attachments}
    assert {
        "snapshot-1.png",
        "snapshot-1.csv",
        "evidence-logs.txt",
        "evidence-events.txt",
        "rollback.json",
    } <= set(files)
    png = files["snapshot-1.png"].content
    assert png.startswith(PNG) and 5_000 < len(png) < 1_000_000
    assert b"timestamp,series,value" in files["snapshot-1.csv"].content
    assert json.loads(files["rollback.json"].content)["rollback"]["status"] == "verified"

    events = pagerduty_server.events
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {key}
    trigger = events[0]
    assert trigger["payload"]["severity"] == "warning" and trigger["payload"]["timestamp"]
    assert trigger["payload"]["custom_details"]["jira"] == issue.key
    assert trigger["images"][0]["src"].startswith("https://backstop.example/snapshots/")
    assert pagerduty_server.incidents[key].state == "resolved"

    # The same job again (a duplicate delivery) changes nothing.
    notifier(stack, prometheus, jira_server, pagerduty_server).file_rollback(rollback.id)
    assert len(jira_server.issues) == 1 and len(pagerduty_server.events) == 2


def test_a_later_outcome_for_the_same_key_is_a_comment(rolled_back, prometheus, jira_server):
    stack, rollback = rolled_back
    notify = notifier(stack, prometheus, jira_server)
    notify.file_rollback(rollback.id)
    rollback.status, rollback.reason, rollback.attempts = "failed", "retried and failed", 2
    stack.store.rollbacks.save(rollback)
    notify.file_rollback(rollback.id)
    [issue] = jira_server.issues.values()
    assert len(issue.comments) == 1 and "failed" in issue.comments[0].body


def test_jira_down_then_back_files_exactly_once(
    rolled_back, prometheus, jira_server, pagerduty_server
):
    stack, rollback = rolled_back
    notify = notifier(stack, prometheus, jira_server, pagerduty_server)
    jira_server.down()
    with pytest.raises(TransientError):  # the job retries with backoff
        notify.file_rollback(rollback.id)
    pending = stack.store.incidents.get(rollback.id)
    assert pending.jira.state == "pending" and pending.pagerduty.state == "delivered"
    assert stack.store.rollbacks.get(rollback.id).status == "verified"  # not delayed
    jira_server.up()
    done = notify.file_rollback(rollback.id)
    assert done.jira.state == "delivered"
    [issue] = jira_server.issues.values()
    assert len(issue.attachments) == len({a.filename for a in issue.attachments})
    assert [e["event_action"] for e in pagerduty_server.events] == ["trigger", "resolve"]


def test_pagerduty_429s_then_delivered_once(rolled_back, prometheus, pagerduty_server):
    stack, rollback = rolled_back
    notify = notifier(stack, prometheus, pagerduty=pagerduty_server)
    notify.pager._events().sleep_timer = 0.001  # the client's own short waits between 429s
    pagerduty_server.fail_with(429, count=6)
    with pytest.raises(TransientError):
        notify.file_rollback(rollback.id)
    assert pagerduty_server.events == []
    pagerduty_server.clear()
    notify.file_rollback(rollback.id)
    assert [e["event_action"] for e in pagerduty_server.events] == ["trigger", "resolve"]


def test_a_pagerduty_5xx_is_left_to_the_jobs_retries(rolled_back, prometheus, pagerduty_server):
    """One request per attempt: the client's own 5xx retries (seconds of sleeping) would hold
    the worker that a newly queued rollback needs."""
    stack, rollback = rolled_back
    notify = notifier(stack, prometheus, pagerduty=pagerduty_server)
    pagerduty_server.fail_with(503, count=10)
    with pytest.raises(TransientError):
        notify.file_rollback(rollback.id)
    assert len(pagerduty_server.requests) == 1
    assert stack.store.incidents.get(rollback.id).pagerduty.state == "pending"


def test_an_invalid_event_is_a_permanent_failure_shown_not_retried(
    rolled_back, prometheus, pagerduty_server
):
    stack, rollback = rolled_back
    notify = notifier(stack, prometheus, pagerduty=pagerduty_server)
    notify.pager = Pager(
        "not-a-valid-key", base_url=pagerduty_server.url, ca_file=str(pagerduty_server.ca_path)
    )
    incident = notify.file_rollback(rollback.id)  # no exception: nothing to retry
    assert incident.pagerduty.state == "failed" and "400" in incident.pagerduty.detail
    assert incident.jira.state == "not_configured"


def test_a_decision_without_a_deployment_pages_a_human(make_stack, prometheus, pagerduty_server):
    stack = make_stack(policy())
    decision = stack.alert(Workload("default", stack.namespace, "Deployment", "lonely"))
    assert decision.reason == "no_recent_deployment"
    incident = notifier(stack, prometheus, pagerduty=pagerduty_server).page_decision(decision.id)
    assert incident.pagerduty.state == "delivered"
    [event] = pagerduty_server.events
    assert event["dedup_key"] == f"backstop-decision-{decision.id}"
    assert "no_recent_deployment" in event["payload"]["summary"]


def test_jira_server_with_a_personal_access_token(rolled_back, prometheus, jira_dc):
    stack, rollback = rolled_back
    notify = notifier(stack, prometheus)
    notify.tickets = Tickets(url=jira_dc.url, pat=jira_dc.pat)
    incident = notify.file_rollback(rollback.id)
    assert incident.jira.state == "delivered"
    [issue] = jira_dc.issues.values()
    assert incident.jira.ref == issue.key and len(issue.attachments) >= 4
    assert {r.auth_scheme for r in jira_dc.requests} == {"Bearer"}


def test_hostile_alert_values_reach_jira_as_text_and_pagerduty_only_as_http_links(
    make_settings, jira_server, pagerduty_server
):
    """Real intake on real Redis, the real ticket builder, the Jira and PagerDuty doubles."""
    policy = Policy.model_validate({"incidents": {"jira": {"project": "OPS"}}})
    app = create_app(make_settings(), policy=policy)
    store = app.extensions["backstop"].store
    checkout = Workload("default", "shop", "Deployment", "checkout")
    # A CI URL stored before URLs were checked: never a link anywhere.
    rollout = rollout_for(
        checkout,
        revision="2",
        previous_revision="1",
        started_at=utcnow() - timedelta(minutes=3),
        url="javascript:alert(1)",
        sources=["ci"],
    )
    store.rollouts.record_ci(rollout, merge_window=timedelta(minutes=5))
    alert = samples.am_alert(
        name="[click here|http://evil.example] !http://evil.example/x.png! {html}",
        starts_at=utcnow().isoformat(),
        backstop_rollback="true",
        team="x}} *bold* h1. {noformat} [~admin] \\ ----",
        zone="eu\u200bwest",
    )
    alert["generatorURL"] = 'http://prometheus.example/graph?g0.expr=x{a="b"}[5m]|y'
    answer = app.test_client().post(
        "/webhooks/alertmanager",
        json=samples.alertmanager(alert),
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
    )
    assert answer.status_code == 202, answer.text
    flush_all()
    [summary] = answer.get_json()["decisions"]
    decision = store.decisions.get(summary["id"])
    assert decision.rollout and decision.rollout.url == "javascript:alert(1)"
    now = utcnow()
    rollback = Rollback(
        id="r-hostile",
        decision_id=decision.id,
        workload=decision.workload,
        bad_revision="2",
        target_revision="1",
        status="verified",
        reason="held",
        steps=[RollbackStep(name="patch", status="ok", started_at=now, finished_at=now)],
        finished_at=now,
    )
    store.rollbacks.save(rollback)
    settings = Settings(public_url="https://backstop.example", api_token="t", webhook_token="w")
    tickets = Tickets(url=jira_server.url, user=jira_server.email, token=jira_server.api_token)
    pager = Pager(
        pagerduty_server.routing_key,
        base_url=pagerduty_server.url,
        ca_file=str(pagerduty_server.ca_path),
    )
    incident = Notifier(store, policy, settings, tickets, pager, None).file_rollback(rollback.id)
    assert (incident.jira.state, incident.pagerduty.state) == ("delivered", "delivered")

    [issue] = jira_server.issues.values()
    description = issue.fields["description"]
    tokens = live_markup(description)
    # The template's two links (Backstop's record, the alert source) and nothing the alert
    # brought: no link, image, heading or block of its own.
    assert tokens.count("link(") == 2 and "!" not in tokens and "h1." not in tokens
    assert "\\[click here\\|http://evil.example\\]" in description
    assert (
        "[Alert source|http://prometheus.example/graph?g0.expr=x%7Ba=%22b%22%7D%5B5m%5D%7Cy]"
        in description
    )
    assert "|javascript:alert\\(1\\) (not linked: not an http or https URL)|" in description
    assert "eu<U\\+200B>west" in description
    assert "\n" not in issue.fields["summary"]

    [trigger] = [e for e in pagerduty_server.events if e["event_action"] == "trigger"]
    hrefs = [link["href"] for link in trigger["links"]]
    assert hrefs and all(href.startswith(("http://", "https://")) for href in hrefs), hrefs
    assert "javascript:alert(1)" not in hrefs


def test_a_judged_rollback_shows_its_judgment_in_jira_and_pagerduty(
    redis_client, jira_server, pagerduty_server
):
    """The real notifier on real Redis, the Jira and PagerDuty doubles: the ticket's
    Judgment table (a hostile KPI name escaped), a graph and CSV of both revisions per KPI,
    and the page's compact judgment with the graph's image."""
    policy = Policy.model_validate({"incidents": {"jira": {"project": "OPS"}}})
    store = Store(redis_client, policy)
    rollback, decision = records()
    assert decision.rollout is not None
    decision.rollout.template_hash = "5d4f8b7c9"
    rollback.id, rollback.status, rollback.finished_at = "r-judged", "verified", utcnow()
    hostile = {**KPI, "name": "{color:red}x|y[z]"}
    rollback.judgment = {
        "verdict": "confirmed",
        "mode": "require",
        "confidence": 0.98,
        "detail": "confirmed ({color:red}x|y[z]: confirmed; p99 latency: nodata)",
        "kpis": [hostile, NODATA],
    }
    store.decisions.save(decision)
    store.rollbacks.save(rollback)
    settings = Settings(public_url="https://backstop.example", api_token="t", webhook_token="w")
    tickets = Tickets(url=jira_server.url, user=jira_server.email, token=jira_server.api_token)
    pager = Pager(
        pagerduty_server.routing_key,
        base_url=pagerduty_server.url,
        ca_file=str(pagerduty_server.ca_path),
    )
    incident = Notifier(store, policy, settings, tickets, pager, None).file_rollback(rollback.id)
    assert (incident.jira.state, incident.pagerduty.state) == ("delivered", "delivered")

    [issue] = jira_server.issues.values()
    description = issue.fields["description"]
    assert "h3. Judgment" in description and "*confirmed* (mode require" in description
    assert "|\\{color:red\\}x\\|y\\[z\\]|before\\_after|40/40|0.05|0.001|" in description
    assert "|p99 latency|not compared|0/0|" in description
    harmless = {**rollback.judgment, "kpis": [KPI, NODATA], "detail": "confirmed"}
    rollback.judgment = harmless
    # The same section with a harmless name holds the same markup.
    expected = ticket.description(rollback, decision, links={}, snapshots=[])
    judged = description.split("h3. Judgment", 1)[1].split("h3. Decision", 1)[0]
    plain = expected.split("h3. Judgment", 1)[1].split("h3. Decision", 1)[0]
    assert live_markup(judged) == live_markup(plain)
    files = {a.filename: a.content for a in issue.attachments}
    assert files["snapshot-1.png"].startswith(PNG) and files["snapshot-2.png"].startswith(PNG)
    rows = files["snapshot-1.csv"].decode().splitlines()
    assert sum("side=new revision (hash 5d4f8b7c9)" in r for r in rows) == 40
    assert sum("side=old revision (revision 1)" in r for r in rows) == 40
    assert files["snapshot-2.csv"] == b"timestamp,series,value\n"  # nodata: no points

    [trigger] = [e for e in pagerduty_server.events if e["event_action"] == "trigger"]
    judgment = trigger["payload"]["custom_details"]["judgment"]
    assert (judgment["verdict"], judgment["mode"]) == ("confirmed", "require")
    assert judgment["kpis"]["{color:red}x|y[z]"]["p_value"] == KPI["p_value"]
    assert judgment["kpis"]["p99 latency"]["verdict"] == "nodata"
    assert "series" not in json.dumps(judgment)
    assert [image["alt"] for image in trigger["images"]] == ["judgment: {color:red}x|y[z]"]
