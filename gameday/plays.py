"""The game day's scenarios of one release or one fault each: what each does to its own
workload of the demo service, and what must follow (the framework they run in is
scenarios.py; those judged by revision are judged.py, the Argo CD one gitops.py)."""

import time
from datetime import UTC, datetime

from core.records import Decision
from gameday.scenarios import (
    NEW_FIRING_TIMEOUT,
    Result,
    Run,
    Scenario,
    _rolled_back,
    image,
)
from gameday.stack import Service

ORDERS_LOOKBACK = 25.0  # broken_previous: see there


def bad_deploy(run: Run, result: Result) -> None:
    result.at("deploy", datetime.now(UTC))
    run.cluster.deploy("checkout", image("checkout", "1.1.0-errors"))
    _rolled_back(run, result, "checkout", image("checkout", "1.0.0"))


def canary(run: Run, result: Result) -> None:
    stable_revision = run.cluster.revision("cart")
    result.at("deploy canary", datetime.now(UTC))
    run.cluster.deploy("cart-canary", image("cart", "1.1.0-errors"))
    _rolled_back(run, result, "cart-canary", image("cart", "1.0.0"))
    result.check("stable untouched", run.cluster.image("cart") == image("cart", "1.0.0"))
    result.check("stable revision unchanged", run.cluster.revision("cart") == stable_revision)
    result.check("no rollback of the stable version", not run.rollbacks("cart"))


def latency(run: Run, result: Result) -> None:
    result.at("deploy", datetime.now(UTC))
    run.cluster.deploy("search", image("search", "1.1.0-slow"))
    rollback = _rolled_back(run, result, "search", image("search", "1.0.0"))
    decision = Decision.model_validate(run.stack.api("GET", f"/decisions/{rollback.decision_id}"))
    result.check("the latency kill switch fired", decision.alertname == "HighP99Latency")


def flapping(run: Run, result: Result) -> None:
    run.cluster.deploy("profile", image("profile", "1.0.1"))  # a healthy release
    run.cluster.wait_rolled_out("profile")
    result.at("healthy deploy", datetime.now(UTC))
    # A 6 s spike: the rule fires (for: 5s), but resolves before min_firing (15 s).
    run.fault("profile", 0.5, 6)
    result.at("spike", datetime.now(UTC))
    decision = run.wait(
        lambda: next((d for d in run.decisions("profile") if d.outcome == "skipped"), None),
        "the spike's decision",
        NEW_FIRING_TIMEOUT,
    )
    result.at(f"decision: {decision.outcome} ({decision.reason})", decision.updated_at)
    steps = [(s.outcome, s.reason) for s in decision.history]
    result.check(
        "deferred, then skipped because it resolved",
        steps[0] == ("deferred", "min_firing") and steps[-1] == ("skipped", "resolved"),
        str(steps),
    )
    time.sleep(2)  # a late rollback would show up within the worker's next poll
    result.check("no rollback", not run.rollbacks("profile"))


def no_deploy(run: Run, result: Result) -> None:
    result.at("KPI breaks", datetime.now(UTC))
    run.fault("billing", 0.5, 60)
    decision = run.wait(
        lambda: next(iter(run.decisions("billing")), None), "a decision", NEW_FIRING_TIMEOUT
    )
    result.at(f"decision: {decision.outcome} ({decision.reason})", decision.updated_at)
    result.check("no rollback", not run.rollbacks("billing"))
    result.check(
        "skipped: no recent deployment",
        (decision.outcome, decision.reason) == ("skipped", "no_recent_deployment"),
        f"{decision.outcome} {decision.reason}",
    )
    incident = run.wait(
        lambda: (
            (found := run.incident(f"decision-{decision.id}"))
            and found.pagerduty.state == "delivered"
            and found
        ),
        "a page",
        60,
    )
    result.at("human paged", incident.updated_at)
    result.check("a human is paged", incident.pagerduty.state == "delivered")


def broken_previous(run: Run, result: Result) -> None:
    # Revision 2 (slow) fired while an engineer had paused automation for the workload:
    # Backstop recorded the alert against it, so it is not a known-good target.
    run.stack.api(
        "POST",
        "/automation/pause",
        {
            "reason": "investigating",
            "workload": {"namespace": run.stack.namespace, "name": "orders"},
        },
    )
    result.at("deploy 2 (slow)", datetime.now(UTC))
    second = time.monotonic()
    run.cluster.deploy("orders", image("orders", "1.1.0-slow"))
    run.wait(
        lambda: any(d.reason == "paused" for d in run.decisions("orders")),
        "revision 2's alert",
        NEW_FIRING_TIMEOUT,
    )
    run.stack.api(
        "POST",
        "/automation/resume",
        {"workload": {"namespace": run.stack.namespace, "name": "orders"}},
    )
    # Two rollouts inside one lookback window would be ambiguous (a human decides): the
    # next release comes once revision 2 is older than the service's lookback.
    time.sleep(max(0.0, ORDERS_LOOKBACK + 2 - (time.monotonic() - second)))
    result.at("deploy 3 (errors)", datetime.now(UTC))
    run.cluster.deploy("orders", image("orders", "1.1.1-errors"))
    rollback = _rolled_back(run, result, "orders", image("orders", "1.0.0"))
    walked = rollback.preflight.get("known_good", {}).get("walked", [])
    result.check(
        "walked back past the broken revision 2",
        rollback.target_revision == "1" and any(not w["ok"] for w in walked),
        f"target {rollback.target_revision}, walked {walked}",
    )


def storm(run: Run, result: Result) -> None:
    result.at("deploy", datetime.now(UTC))
    run.cluster.deploy("inventory", image("inventory", "1.1.0-errors"))
    run.wait(lambda: run.decisions("inventory"), "the alert", NEW_FIRING_TIMEOUT)
    result.at("storm starts", datetime.now(UTC))
    codes = run.storm("inventory", copies=2000)
    result.at("storm ends", datetime.now(UTC))
    result.check("every notification accepted", set(codes) == {202}, str(sorted(set(codes))))
    result.overhead["storm_notifications"] = len(codes)
    _rolled_back(run, result, "inventory", image("inventory", "1.0.0"))
    result.check("one decision for the episode", len(run.decisions("inventory")) == 1)


def migration(run: Run, result: Result) -> None:
    result.at("deploy with schema 2", datetime.now(UTC))
    run.cluster.deploy("ledger", image("ledger", "1.1.0-errors"), schema="2")
    rollback = run.finished_rollback("ledger")
    result.links["rollback"] = f"{run.stack.receiver.url}/rollbacks/{rollback.id}"
    result.at(f"rollback {rollback.status}", rollback.finished_at)
    result.check("blocked by the migration guard", rollback.status == "blocked", rollback.reason)
    result.check("nothing reverted", run.cluster.image("ledger") == image("ledger", "1.1.0-errors"))
    incident = run.filed(result, rollback)
    result.check("paged", incident.pagerduty.state == "delivered")


def paused(run: Run, result: Result) -> None:
    run.stack.api("POST", "/automation/pause", {"reason": "game day: paused scenario"})
    try:
        result.at("deploy", datetime.now(UTC))
        run.cluster.deploy("catalog", image("catalog", "1.1.0-errors"))
        decision = run.wait(
            lambda: next(iter(run.decisions("catalog")), None), "a decision", NEW_FIRING_TIMEOUT
        )
        result.at(f"decision: {decision.outcome} ({decision.reason})", decision.updated_at)
        result.check("the decision says paused", decision.reason == "paused", decision.reason)
        time.sleep(2)
        result.check("no rollback", not run.rollbacks("catalog"))
        result.check(
            "nothing changed", run.cluster.image("catalog") == image("catalog", "1.1.0-errors")
        )
    finally:
        run.stack.api("POST", "/automation/resume", {"reason": "game day: paused scenario done"})


def dry_run(run: Run, result: Result) -> None:
    result.at("deploy", datetime.now(UTC))
    run.cluster.deploy("reviews", image("reviews", "1.1.0-errors"))
    decision = run.wait(
        lambda: next((d for d in run.decisions("reviews") if d.outcome == "dry_run"), None),
        "the dry-run decision",
        NEW_FIRING_TIMEOUT,
    )
    result.at(f"decision: {decision.outcome} ({decision.reason})", decision.updated_at)
    recorded = run.wait(
        lambda: (
            (found := run.stack.api("GET", "/rollbacks?status=dry_run&limit=100")["rollbacks"])
            and [r for r in found if r["workload"]["name"] == "reviews"]
        ),
        "the dry-run record",
        60,
    )
    result.check("the would-be patch is recorded", bool(recorded[0]["patch"]))
    result.check(
        "nothing changed", run.cluster.image("reviews") == image("reviews", "1.1.0-errors")
    )
    result.check("no real rollback", not run.rollbacks("reviews"))


SCENARIOS = [
    Scenario(
        "bad_deploy",
        "one verified rollback, one Jira issue, PagerDuty triggered then resolved",
        [Service("checkout")],
        bad_deploy,
    ),
    Scenario(
        "canary",
        "only the canary is reverted; the stable version untouched",
        [Service("cart"), Service("cart-canary")],
        canary,
        replicas={"cart": 9, "cart-canary": 1},
    ),
    Scenario(
        "latency",
        "p99 latency above its threshold for the window: rollback",
        [Service("search", verify_latency=True)],
        latency,
    ),
    Scenario(
        "flapping",
        "a spike shorter than the window: no rollback, the decision says why",
        [Service("profile")],
        flapping,
    ),
    Scenario(
        "no_deploy",
        "a KPI breaks with no recent deployment: no rollback, a human is paged",
        [Service("billing", lookback="15s")],
        no_deploy,
    ),
    Scenario(
        "broken_previous",
        "the previous version was unhealthy too: walked back past it",
        [Service("orders", lookback=f"{ORDERS_LOOKBACK:.0f}s")],
        broken_previous,
    ),
    Scenario(
        "storm",
        "2,000 repeated notifications during the incident: one rollback",
        [Service("inventory")],
        storm,
    ),
    Scenario(
        "migration",
        "the bad release moved the schema marker: blocked, paged",
        [Service("ledger")],
        migration,
    ),
    Scenario(
        "paused",
        "automation paused: nothing changes, the decision says paused",
        [Service("catalog")],
        paused,
    ),
    Scenario(
        "dry_run",
        "dry-run mode: the would-be patch recorded, nothing changed",
        [Service("reviews")],
        dry_run,
        mode="dry-run",
    ),
]
