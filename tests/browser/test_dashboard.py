"""The dashboard in a real browser, against the real receiver under gunicorn.

Every action goes through the page as an on-call engineer does it: log in, read the pages
(which refresh themselves), click the buttons (the JSON API with the session's CSRF token),
accept the confirmations. What other processes do (a worker rolling back on the test
Kubernetes control plane, a burst worker retrying a job) shows up without a reload.
"""

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from config.policy import Policy
from core import queues
from core.models import Workload
from core.records import Decision, Incident, Rollback, WorkloadRecord, utcnow
from core.store import Store
from testbed.processes import run_burst_worker
from tests import samples
from tests.browser.conftest import (
    OPERATOR,
    OPERATOR_PASSWORD,
    PHONE,
    REFRESHED,
    VIEWER,
    VIEWER_PASSWORD,
    get_from_page,
    log_in,
    log_in_as,
    post_from_page,
    send_webhook,
)
from tests.conftest import API_TOKEN
from tests.workloads import FAST, bad_release

pytestmark = pytest.mark.integration

ENFORCE = {"mode": "enforce", "defaults": {"min_firing": "0s"}}
APPROVE = {"mode": "approve", "defaults": {"min_firing": "0s"}}
CHECKOUT = Workload("default", "shop", "Deployment", "checkout")


def report_deployment_and_alert(server) -> dict:
    """CI reports shop/checkout revision 3 ten minutes ago; its kill switch fires five
    minutes ago. Returns the decision from the webhook's answer."""
    send_webhook(server, "deployments", samples.deployment_event(minutes_ago=10))
    answer = send_webhook(server, "alertmanager", samples.kill_switch(minutes_ago=5))
    [decision] = answer["decisions"]
    return decision


def audit_entry(page: Page, action: str):
    """The audit table's one row for `action` (the test fails if there are more or none)."""
    rows = page.get_by_test_id("audit-table").locator(
        "tbody tr", has=page.locator("code", has_text=re.compile(f"^{action}$"))
    )
    expect(rows).to_have_count(1)
    return rows.first


# -- logging in ----------------------------------------------------------------------------


def test_an_operator_logs_in_with_a_password_and_out_again(backstop, page):
    server = backstop(ENFORCE)
    page.goto(f"{server.url}/alerts")
    expect(page).to_have_url(re.compile(r"/login\?next=/alerts$"))
    log_in(page, server, username=OPERATOR, password=OPERATOR_PASSWORD, here=True)
    # Back where they were going.
    expect(page).to_have_url(f"{server.url}/alerts")
    expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
    page.get_by_role("link", name="Overview").click()
    expect(page).to_have_url(f"{server.url}/")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(page.locator("header .who")).to_contain_text(f"{OPERATOR} · operator")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(f"{server.url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))


def test_a_password_login_lands_on_the_overview(backstop, page):
    server = backstop(ENFORCE)
    log_in(page, server, username=OPERATOR, password=OPERATOR_PASSWORD)
    expect(page).to_have_url(f"{server.url}/")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Pause automation")).to_be_visible()


def test_the_api_token_logs_in_as_an_operator(backstop, page):
    server = backstop(ENFORCE)
    log_in(page, server, token=API_TOKEN)
    expect(page).to_have_url(f"{server.url}/")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(page.locator("header .who")).to_contain_text("token · operator")
    expect(page.get_by_role("button", name="Pause automation")).to_be_visible()


def test_a_wrong_password_shows_the_error_and_stays_on_the_login_page(backstop, page):
    server = backstop(ENFORCE)
    log_in(page, server, username=OPERATOR, password="not-the-password")
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong name, password or token.")
    expect(page).to_have_url(f"{server.url}/login")
    expect(page.get_by_label("Name")).to_have_value(OPERATOR)
    # No session was started: the overview still sends us to the login page.
    page.goto(f"{server.url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    expect(page.get_by_test_id("login-error")).to_have_count(0)


# -- a rollback, watched live ----------------------------------------------------------------


def test_a_rollback_goes_from_queued_to_verified(
    make_stack, kube, backstop, worker_process, redis_url, page, new_context, screenshot
):
    stack = make_stack(FAST)
    workload = bad_release(stack)
    # The receiver's policy file is the stack's policy.
    server = backstop({**FAST, "watch": {"namespaces": [stack.namespace]}})
    alert = samples.am_alert(
        "CheckoutHigh5xx",
        starts_at=datetime.now(UTC).isoformat(),
        fingerprint="b7c1d2e3f4a50617",
        namespace=workload.namespace,
        deployment=workload.name,
        backstop_rollback="true",
    )
    [decision] = send_webhook(server, "alertmanager", samples.alertmanager(alert))["decisions"]
    assert decision["outcome"] == "rollback", decision
    job_id = queues.rollback_job_id(workload, "2")

    log_in_as(page, server, OPERATOR, OPERATOR_PASSWORD)
    expect(page.get_by_test_id("no-workers")).to_be_visible()
    page.get_by_role("link", name="Rollbacks").click()
    waiting = page.get_by_test_id("waiting")
    expect(waiting.get_by_role("heading", name="Waiting for a worker")).to_be_visible()
    waiting_row = waiting.locator(f'tr[data-rollback="{job_id}"]')
    expect(waiting_row).to_contain_text(f"roll back {workload.key} from revision 2")
    expect(waiting_row.locator(".badge")).to_have_text("queued")
    page.evaluate("window.notReloaded = true")  # gone if the page is loaded again

    worker_process(
        {
            "REDIS_URL": redis_url,
            "BACKSTOP_CONFIG": server.env["BACKSTOP_CONFIG"],
            "KUBECONFIG": str(kube.kubeconfig),
        }
    )
    row = page.get_by_test_id("rollback-table").locator(f'tr[data-rollback="{job_id}"]')
    expect(row).to_be_visible(timeout=REFRESHED)
    expect(row.locator("td").nth(3)).to_have_text("verified", timeout=60_000)
    expect(row.locator("td").nth(2)).to_have_text("2 → 1")
    expect(page.get_by_test_id("waiting")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True  # all of it by auto-refresh
    # And really rolled back on the cluster: revision 1's template, as a new revision 3.
    assert (stack.revision("checkout"), stack.image("checkout")) == ("3", "shop/checkout:1")

    row.get_by_role("link", name=job_id).click()
    expect(page).to_have_url(f"{server.url}/rollbacks/{job_id}")
    expect(page.get_by_test_id("rollback-status")).to_have_text("verified")
    expect(page.get_by_text("applied as revision 3")).to_be_visible()
    # No Prometheus is configured: the rollout alone is verified.
    expect(page.get_by_text("rollout only", exact=True)).to_be_visible()
    expect(page.get_by_test_id("timeline").locator("tbody tr").first).to_be_visible()

    # The README's screenshots, from this real rollback (the worker still running).
    screenshot(page, "rollback")
    page.goto(f"{server.url}/")
    overview_row = page.locator(f'tr[data-rollback="{job_id}"]')
    expect(overview_row).to_contain_text("verified")
    expect(page.get_by_test_id("no-workers")).to_have_count(0)  # the worker is listed
    screenshot(page, "overview", full_page=True)
    logged_in = page.context.storage_state()
    for name, options in (
        ("dark", {"color_scheme": "dark"}),
        ("phone", {"viewport": PHONE, "device_scale_factor": 2, "is_mobile": True}),
    ):
        other = new_context(storage_state=logged_in, **options).new_page()
        other.goto(f"{server.url}/")
        expect(other.locator(f'tr[data-rollback="{job_id}"]')).to_contain_text("verified")
        screenshot(other, f"overview-{name}", full_page=name == "dark")
        if name == "dark":
            other.goto(f"{server.url}/rollbacks/{job_id}")
            expect(other.get_by_test_id("rollback-status")).to_have_text("verified")
            screenshot(other, "rollback-dark")


# -- pausing -----------------------------------------------------------------------------------


def test_pausing_automation_skips_the_next_kill_switch(backstop, page):
    server = backstop(ENFORCE)
    log_in_as(page, server, OPERATOR, OPERATOR_PASSWORD)
    automation = page.get_by_test_id("automation")
    expect(automation.get_by_test_id("paused-state")).to_have_text("Running.")
    pause = automation.get_by_role("button", name="Pause automation")
    reason = automation.get_by_label("reason for Pause automation")
    # The reason is required: the browser refuses the form without one (and the audit
    # below holds exactly one pause).
    pause.click()
    assert reason.evaluate("input => input.validity.valueMissing") is True

    reason.fill("game day: checkout freeze")
    pause.click()
    expect(page.get_by_role("status")).to_contain_text("Automation paused")
    state = page.get_by_test_id("automation").get_by_test_id("paused-state")
    expect(state).to_contain_text(f"Paused by user:{OPERATOR}")
    expect(state).to_contain_text("game day: checkout freeze")
    expect(page.get_by_test_id("paused-badge")).to_be_visible()
    expect(page.get_by_role("button", name="Resume automation")).to_be_visible()

    decision = report_deployment_and_alert(server)
    page.get_by_role("link", name="Alerts").click()
    rows = page.get_by_test_id("alerts-table").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("CheckoutHigh5xx")
    expect(rows.first).to_contain_text("shop/checkout")
    expect(rows.first.get_by_test_id("reason")).to_contain_text("paused")
    expect(rows.first.get_by_test_id("reason")).to_contain_text("automation is paused")
    expect(rows.first.get_by_role("link")).to_have_attribute("href", f"/decisions/{decision['id']}")

    page.get_by_role("link", name="Audit").click()
    pause_entry = audit_entry(page, "pause")
    expect(pause_entry).to_contain_text(f"user:{OPERATOR}")
    expect(pause_entry).to_contain_text("global")
    expect(pause_entry).to_contain_text("game day: checkout freeze")


# -- approving -------------------------------------------------------------------------------


def test_an_operator_approves_an_awaiting_rollback(backstop, page):
    server = backstop(APPROVE)
    decision = report_deployment_and_alert(server)
    assert decision["outcome"] == "awaiting_approval", decision
    log_in_as(page, server, OPERATOR, OPERATOR_PASSWORD)
    expect(page.get_by_test_id("awaiting-count")).to_have_text("1")

    page.get_by_role("link", name="Approvals").click()
    row = page.get_by_test_id("approvals-table").locator(f'tr[data-decision="{decision["id"]}"]')
    expect(row).to_contain_text("shop/checkout")
    expect(row).to_contain_text("revision 3")
    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    approve = row.get_by_test_id("approve")
    approve.get_by_label("reason for Approve").fill("confirmed on the dashboard")
    approve.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approved")
    expect(page.get_by_test_id("no-approvals")).to_be_visible()
    expect(page.get_by_test_id("awaiting-count")).to_have_count(0)
    assert questions == ["Roll back checkout now?"]

    page.goto(f"{server.url}/decisions/{decision['id']}")
    summary = page.locator("main section.card").first
    expect(summary.locator(".badge").first).to_have_text("rollback")
    expect(summary.locator(".reason")).to_have_text("enqueued")
    job_id = queues.rollback_job_id(CHECKOUT, "3")
    expect(summary).to_contain_text(job_id)
    expect(page.locator("ol.timeline")).to_contain_text(f"by user:{OPERATOR}")
    expect(page.get_by_test_id("approve")).to_have_count(0)

    # No worker runs here: the approved rollback waits in the queue.
    page.get_by_role("link", name="Rollbacks").click()
    waiting = page.get_by_test_id("waiting").locator(f'tr[data-rollback="{job_id}"]')
    expect(waiting.locator(".badge")).to_have_text("queued")

    page.get_by_role("link", name="Audit").click()
    entry = audit_entry(page, "approve")
    expect(entry).to_contain_text(f"user:{OPERATOR}")
    expect(entry).to_contain_text("confirmed on the dashboard")


# -- releasing a quarantine -------------------------------------------------------------------


def test_an_operator_releases_a_quarantine_with_a_reason(backstop, redis_client, page, screenshot):
    server = backstop(ENFORCE)
    store = Store(redis_client, Policy.model_validate(ENFORCE))
    store.quarantine.add(
        samples.quarantine(
            id="rb-7",
            images=["shop/checkout:3"],
            digests=[f"docker.io/shop/checkout@sha256:{'c0' * 32}"],
            reason="rolled back: verified (kpis_recovered)",
        )
    )
    incident = Incident(id="rb-7", key="k")
    incident.jira.ref = "OPS-7"
    store.incidents.save(incident)
    log_in_as(page, server, OPERATOR, OPERATOR_PASSWORD)
    page.get_by_role("link", name="Quarantine").click()
    row = page.get_by_test_id("quarantine-table").locator('tr[data-quarantine="rb-7"]')
    expect(row).to_contain_text("shop/checkout:3")
    expect(row.get_by_test_id("quarantine-rollback")).to_have_attribute("href", "/rollbacks/rb-7")
    expect(row.get_by_test_id("quarantine-jira")).to_have_text("OPS-7")
    screenshot(page, "quarantine")
    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    release = row.get_by_test_id("release")
    # The reason is required: the browser keeps the empty form from being sent.
    release.get_by_role("button", name="Release").click()
    expect(row).to_have_count(1)
    assert questions == [] and store.quarantine.get("rb-7").active
    release.get_by_label("reason for Release").fill("fixed in 3.1")
    release.get_by_role("button", name="Release").click()
    expect(page.get_by_role("status")).to_contain_text("Quarantine released")
    expect(page.get_by_test_id("no-quarantine")).to_be_visible()
    ended = page.get_by_test_id("ended-quarantine-table").locator('tr[data-quarantine="rb-7"]')
    expect(ended.get_by_test_id("quarantine-end")).to_have_text("released")
    expect(ended).to_contain_text(f"user:{OPERATOR}")
    expect(ended).to_contain_text("fixed in 3.1")
    assert questions == ["Release this quarantine? Its images may deploy again."]

    page.get_by_role("link", name="Audit").click()
    entry = audit_entry(page, "release_quarantine")
    expect(entry).to_contain_text(f"user:{OPERATOR}")
    expect(entry).to_contain_text("fixed in 3.1")


# -- retrying a failed job ---------------------------------------------------------------------


def test_a_failed_job_is_retried_from_the_jobs_page(
    backstop, redis_client, redis_url, jira_server, page
):
    server = backstop(ENFORCE)
    # A rollback that failed, whose incident must go to Jira, which is down (500).
    store = Store(redis_client, Policy.model_validate(ENFORCE))
    rollback_id = queues.rollback_job_id(CHECKOUT, "3")
    store.rollbacks.save(
        Rollback(
            id=rollback_id,
            decision_id="no-such-decision",
            workload=WorkloadRecord.of(CHECKOUT),
            bad_revision="3",
            status="failed",
            reason="permanent error: the cluster refused the patch",
            attempts=1,
            finished_at=utcnow(),
        )
    )
    job_id = queues.incident_job_id(rollback_id)
    queues.queue(redis_client, queues.INCIDENTS).enqueue_call(
        "workers.jobs.incident",
        kwargs={"rollback_id": rollback_id},
        job_id=job_id,
        description=f"file the incident for rollback {rollback_id}",
    )  # no retries: the first failure lands in the failed registry
    jira_server.fail_with(500)
    worker_env = {
        "REDIS_URL": redis_url,
        "BACKSTOP_CONFIG": server.env["BACKSTOP_CONFIG"],
        "JIRA_URL": jira_server.url,
        "JIRA_USER": jira_server.email,
        "JIRA_TOKEN": jira_server.api_token,
    }
    run_burst_worker(worker_env)
    assert jira_server.requests and not jira_server.issues

    log_in_as(page, server, OPERATOR, OPERATOR_PASSWORD)
    page.get_by_role("link", name="Jobs").click()
    tabs = page.get_by_role("navigation", name="registries")
    expect(tabs.get_by_role("link", name=re.compile("^failed"))).to_have_attribute(
        "aria-current", "page"
    )
    row = page.get_by_test_id("jobs-table").locator(f'tr[data-job="{job_id}"]')
    expect(row).to_contain_text("incidents")
    expect(row.locator("summary")).to_contain_text("Jira unavailable (500)")
    expect(row.locator(".badge")).to_have_text("failed")

    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text("Job requeued")
    expect(row).to_have_count(0)
    expect(tabs.get_by_role("link", name=re.compile("^failed"))).to_have_text("failed 0")
    tabs.get_by_role("link", name=re.compile("^queued")).click()
    expect(row.locator(".badge")).to_have_text("queued")

    jira_server.clear()
    run_burst_worker(worker_env)
    expect(row).to_have_count(0, timeout=REFRESHED)  # the queued list refreshed itself
    tabs.get_by_role("link", name=re.compile("^finished")).click()
    expect(row.locator(".badge")).to_have_text("finished")
    [issue] = jira_server.issues.values()
    assert issue.fields["summary"] == (
        f"[Backstop] {CHECKOUT.key}: rollback 3 -> ? after alert: failed"
    )

    page.get_by_role("link", name="Audit").click()
    entry = audit_entry(page, "job_retry")
    expect(entry).to_contain_text(f"user:{OPERATOR}")
    expect(entry).to_contain_text(f"job/{job_id}")


# -- who may act -----------------------------------------------------------------------------


def test_a_viewer_cannot_act(backstop, page):
    server = backstop(ENFORCE)
    log_in_as(page, server, VIEWER, VIEWER_PASSWORD)
    expect(page.locator("header .who")).to_contain_text(f"{VIEWER} · viewer")
    automation = page.get_by_test_id("automation")
    expect(automation.get_by_test_id("paused-state")).to_have_text("Running.")
    expect(page.get_by_role("button", name="Pause automation")).to_have_count(0)
    expect(page.locator("form[data-api]")).to_have_count(0)

    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    answer = post_from_page(page, "/api/v1/automation/pause", {"reason": "I am curious"}, csrf)
    assert answer["status"] == 403 and answer["body"]["error"]["code"] == "forbidden", answer
    state = get_from_page(page, "/api/v1/automation")
    assert state["status"] == 200 and state["body"]["paused"] is None


def test_a_post_without_the_csrf_token_fails(backstop, page):
    server = backstop(ENFORCE)
    log_in_as(page, server, OPERATOR, OPERATOR_PASSWORD)
    body = {"reason": "sent by another site"}
    for csrf in (None, "", "not-the-token"):
        answer = post_from_page(page, "/api/v1/automation/pause", body, csrf)
        assert answer["status"] == 403, answer
        assert answer["body"]["error"]["code"] == "csrf_failed", answer
    state = get_from_page(page, "/api/v1/automation")
    assert state["status"] == 200 and state["body"]["paused"] is None
    audit = get_from_page(page, "/api/v1/audit")["body"]["audit"]
    assert [entry["action"] for entry in audit] == ["login"]

    # The same request with the page's own token is accepted: the token was what was missing.
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = post_from_page(page, "/api/v1/automation/pause", body, csrf)
    assert answer["status"] == 200 and answer["body"] == {"paused": "global"}, answer
    state = get_from_page(page, "/api/v1/automation")["body"]
    assert state["paused"]["by"] == f"user:{OPERATOR}"


def test_a_judged_rollback_draws_new_against_old_per_kpi(backstop, redis_client, page):
    """From the decision's one-line verdict to the rollback's judgment card: each KPI's
    chart shows both revisions' series, their medians and the legend."""
    server = backstop(ENFORCE)
    store = Store(redis_client, Policy.model_validate(ENFORCE))
    now = utcnow()
    new = [[t, 0.05 + (t % 3) * 0.001] for t in range(0, 40, 2)]
    old = [[t, 0.001 + (t // 2 % 2) * 0.0005] for t in range(0, 40, 2)]
    store.decisions.save(
        Decision(
            id="judged-episode",
            episode_id="judged-episode",
            alertname="CheckoutErrors",
            starts_at=now,
            workload=WorkloadRecord.of(CHECKOUT),
            outcome="rollback",
            reason="kill_switch",
            job_id="judged-1",
        )
    )
    store.rollbacks.save(
        Rollback(
            id="judged-1",
            decision_id="judged-episode",
            workload=WorkloadRecord.of(CHECKOUT),
            bad_revision="3",
            target_revision="2",
            status="verified",
            reason="kpis_recovered",
            finished_at=now,
            judgment={
                "verdict": "confirmed",
                "mode": "require",
                "confidence": 0.98,
                "detail": "confirmed (5xx ratio: confirmed; p99: nodata)",
                "kpis": [
                    {
                        "name": "5xx ratio",
                        "how": "side_by_side",
                        "series": {"new": new, "old": old},
                        "n_new": 20,
                        "n_old": 20,
                        "median_new": 0.051,
                        "median_old": 0.0012,
                        "p_value": 3e-8,
                        "shift": 0.049,
                        "allowed": 0.00012,
                        "verdict": "confirmed",
                        "reason": "The new revision is worse.",
                    },
                    {"name": "p99", "verdict": "nodata", "reason": "Prometheus could not answer"},
                ],
            },
        )
    )
    log_in_as(page, server, VIEWER, VIEWER_PASSWORD)
    page.goto(f"{server.url}/decisions/judged-episode")
    line = page.get_by_test_id("decision-judgment")
    expect(line).to_contain_text("confirmed")
    line.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/rollbacks/judged-1#judgment$"))
    card = page.get_by_test_id("judgment")
    expect(card).to_be_visible()
    expect(card.get_by_test_id("judgment-kpi")).to_have_count(2)
    chart = card.get_by_test_id("judgment-kpi").first
    expect(chart.get_by_role("img")).to_be_visible()
    expect(chart.locator(".legend")).to_contain_text("new: revision 3")
    expect(chart.locator(".legend")).to_contain_text("old: revision 2")
    for name in ("new", "old"):
        series = chart.get_by_test_id(f"series-{name}")
        expect(series).to_be_visible()
        box = series.bounding_box()
        assert box and box["width"] > 100, box  # drawn across the chart, not collapsed
        # A horizontal line has no height, which Playwright counts as hidden: measure it.
        median = chart.get_by_test_id(f"median-{name}").bounding_box()
        assert median and median["width"] > 100, median
    # The two series are drawn in different colours, one above the other (new is worse).
    new_box = chart.get_by_test_id("series-new").bounding_box()
    old_box = chart.get_by_test_id("series-old").bounding_box()
    assert new_box and old_box and new_box["y"] + new_box["height"] < old_box["y"]
    strokes = {
        name: chart.get_by_test_id(f"series-{name}").evaluate("e => getComputedStyle(e).stroke")
        for name in ("new", "old")
    }
    assert strokes["new"] != strokes["old"] and "none" not in strokes.values(), strokes
    expect(card.get_by_test_id("no-points")).to_have_count(1)  # p99 had no data
