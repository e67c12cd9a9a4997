"""The game-day scenarios: what each does to the demo service, and what must follow.

Every scenario has its own workload, so they share one stack. `prepare` deploys every
workload's first, healthy version at once and waits until those are old enough to be
known good; each `run` then breaks something and checks Backstop's reaction through its
JSON API, the cluster, and the Jira and PagerDuty doubles.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests

from core.records import Decision, Incident, Rollback
from gameday.cluster import Cluster
from gameday.stack import TIMINGS, VERIFY, Service, Stack
from testbed.processes import poll

ORDERS_LOOKBACK = 25.0  # broken_previous: see there
NEW_FIRING_TIMEOUT = 90.0  # deploy -> alert -> decision -> rollback, with room on a busy CI
DONE_TIMEOUT = 150.0


def seconds(duration: str) -> float:
    """'15s' -> 15.0 (the game day's own durations are all in seconds)."""
    return float(duration.rstrip("s"))


class Failed(AssertionError):
    """An expectation did not hold."""


@dataclass
class Result:
    """One scenario's outcome: verdict, checks, timeline, overhead, where to look."""

    name: str
    expectation: str
    passed: bool = False
    checks: list[dict] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    overhead: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    error: str = ""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        """Record a check; a failed one ends the scenario."""
        self.checks.append({"check": what, "ok": bool(ok), "detail": detail})
        if not ok:
            raise Failed(f"{what}: {detail}" if detail else what)

    def at(self, event: str, moment: datetime | str | None) -> None:
        """Add an event to the timeline."""
        if moment is None:
            return
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        self.timeline.append({"event": event, "at": moment.isoformat()})

    def to_json(self) -> dict:
        """The report's entry."""
        return {
            "scenario": self.name,
            "expectation": self.expectation,
            "verdict": "pass" if self.passed else "fail",
            "error": self.error,
            "checks": self.checks,
            "timeline": sorted(self.timeline, key=lambda e: e["at"]),
            "overhead_s": self.overhead,
            "links": self.links,
        }


class Run:
    """What a scenario works with: the stack, the cluster, and polling helpers."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.cluster = Cluster(stack.api_client(), stack.namespace)
        self.parts: dict[str, object] = {}  # what a scenario's setup started, by scenario

    def key(self, name: str) -> str:
        return f"default/{self.stack.namespace}/Deployment/{name}"

    def wait(self, condition: Callable[[], object], what: str, timeout: float):
        """Poll until `condition` gives something truthy; Failed after `timeout`."""
        try:
            return poll(condition, timeout=timeout, interval=0.5)
        except TimeoutError:
            raise Failed(f"timed out after {timeout:.0f}s waiting for {what}") from None

    def decisions(self, name: str) -> list[Decision]:
        found = self.stack.api("GET", f"/decisions?workload={self.key(name)}&limit=1000")
        return [Decision.model_validate(d) for d in found["decisions"]]

    def rollbacks(self, name: str) -> list[Rollback]:
        found = self.stack.api("GET", "/rollbacks?limit=1000")["rollbacks"]
        rollbacks = [Rollback.model_validate(r) for r in found]
        return [r for r in rollbacks if r.workload.name == name and r.mode == "enforce"]

    def incident(self, incident_id: str) -> Incident | None:
        found = self.stack.api("GET", "/incidents?limit=1000")["incidents"]
        return next((Incident.model_validate(i) for i in found if i["id"] == incident_id), None)

    def finished_rollback(self, name: str) -> Rollback:
        """Wait for the workload's rollback to finish; return it."""
        try:
            self.wait(lambda: self.rollbacks(name), f"a rollback of {name}", NEW_FIRING_TIMEOUT)
        except Failed as exc:
            decided = [f"{d.outcome}/{d.reason} {d.detail}".strip() for d in self.decisions(name)]
            raise Failed(f"{exc}; decisions: {decided or 'none'}") from None
        return self.wait(
            lambda: next((r for r in self.rollbacks(name) if r.terminal), None),
            f"the rollback of {name} to finish",
            DONE_TIMEOUT,
        )

    def filed(self, result: Result, rollback: Rollback) -> Incident:
        """Wait until the rollback's incident reached Jira and PagerDuty; link it."""
        incident = self.wait(
            lambda: (
                (found := self.incident(rollback.id))
                and found.jira.state == "delivered"
                and found.pagerduty.state == "delivered"
                and found
            ),
            f"the incident of {rollback.id} in Jira and PagerDuty",
            60,
        )
        result.links["jira"] = incident.jira.ref
        result.at("incident filed", incident.updated_at)
        return incident

    def fault(self, deployment: str, error_ratio: float, duration: float) -> None:
        """Break a deployment's KPI in the demo service without deploying anything."""
        self.stack.demo.fault(deployment, error_ratio, duration)

    def storm(self, name: str, copies: int, threads: int = 8) -> list[int]:
        """Replay the workload's firing alert, as Alertmanager would, `copies` times."""
        alerts = requests.get(f"{self.stack.alertmanager_url}/api/v2/alerts", timeout=5).json()
        mine = [a for a in alerts if a["labels"].get("deployment") == name]
        if not mine:
            raise Failed(f"Alertmanager holds no alert for {name}")
        payload = _webhook(mine)
        url = f"{self.stack.receiver.url}/webhooks/alertmanager"
        headers = {"Authorization": f"Bearer {self.stack.webhook_token}"}
        session = requests.Session()

        def send(_):
            return session.post(url, json=payload, headers=headers, timeout=30).status_code

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(send, range(copies)))


def _webhook(alerts: list[dict]) -> dict:
    """Alertmanager's webhook body (v4) for alerts as its API lists them."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="gameday-storm"}',
        "status": "firing",
        "receiver": "backstop",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": a["labels"],
                "annotations": a.get("annotations", {}),
                "startsAt": a["startsAt"],
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": a.get("generatorURL", ""),
                "fingerprint": a["fingerprint"],
            }
            for a in alerts
        ],
    }


# -- the scenarios ---------------------------------------------------------------------------


@dataclass
class Scenario:
    """A named game day: its workloads, what it does, what must follow."""

    name: str
    expectation: str
    services: list[Service]
    play: Callable[[Run, Result], None]
    replicas: dict[str, int] = field(default_factory=dict)
    mode: str = "enforce"
    # Deploys the first version itself (e.g. through Argo CD) instead of `prepare`.
    setup: Callable[["Run"], None] | None = None

    @property
    def workloads(self) -> list[str]:
        return [service.deployment for service in self.services]


def image(name: str, tag: str) -> str:
    return f"demo/{name}:{tag}"


def _rollback_timeline(run: Run, result: Result, rollback: Rollback, decision: Decision) -> None:
    """Timeline and overhead of a rollback from Backstop's own records."""
    episodes = run.stack.api("GET", "/alerts?limit=1000")["alerts"]
    episode = next((e for e in episodes if e["id"] == decision.episode_id), None)
    result.at("alert active (startsAt)", decision.starts_at)
    if episode:
        result.at("webhook received", episode["first_seen"])
    result.at(f"decision: {decision.outcome}", decision.updated_at)
    steps = {step.name: step for step in rollback.steps}
    result.at("rollback started", rollback.created_at)
    if "revert" in steps:
        result.at("patch applied", steps["revert"].finished_at)
    if "rollout" in steps:
        result.at("rollout complete", steps["rollout"].finished_at)
    result.at(f"rollback {rollback.status}", rollback.finished_at)
    result.links["rollback"] = f"{run.stack.receiver.url}/rollbacks/{rollback.id}"
    if episode and "revert" in steps:
        # Backstop may act only once the episode is min_firing old: the rest is its own.
        arrived = datetime.fromisoformat(episode["first_seen"])
        allowed = decision.starts_at + timedelta(seconds=seconds(TIMINGS["min_firing"]))
        result.overhead["webhook_to_patch"] = round(
            (steps["revert"].finished_at - max(arrived, allowed)).total_seconds(), 3
        )
    if "rollout" in steps and "verify" in steps:
        configured = seconds(VERIFY["settle"]) + seconds(VERIFY["window"])
        result.overhead["rollout_to_verified"] = round(
            (steps["verify"].finished_at - steps["rollout"].finished_at).total_seconds()
            - configured,
            3,
        )


def _rolled_back(run: Run, result: Result, name: str, good: str) -> Rollback:
    """The common ending: one verified rollback to `good`, one ticket, a page resolved."""
    rollback = run.finished_rollback(name)
    decision = Decision.model_validate(run.stack.api("GET", f"/decisions/{rollback.decision_id}"))
    _rollback_timeline(run, result, rollback, decision)
    result.check("rolled back and verified", rollback.status == "verified", rollback.reason)
    result.check(
        "the good image runs again", run.cluster.image(name) == good, run.cluster.image(name)
    )
    incident = run.filed(result, rollback)
    issues = [
        i for i in run.stack.jira.issues.values() if incident.key in i.fields.get("labels", [])
    ]
    result.check("exactly one Jira issue", len(issues) == 1, f"{len(issues)} issues")
    run.wait(
        lambda: any(
            e.get("event_action") == "resolve" and e.get("dedup_key") == incident.key
            for e in run.stack.pagerduty.events
        ),
        "PagerDuty to be resolved",
        60,
    )
    actions = [
        e["event_action"] for e in run.stack.pagerduty.events if e.get("dedup_key") == incident.key
    ]
    result.check("PagerDuty triggered, then resolved", actions[:1] == ["trigger"], str(actions))
    result.check("exactly one rollback", len(run.rollbacks(name)) == 1)
    return rollback


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
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def services(chosen: list[Scenario]) -> list[Service]:
    """Every workload the chosen scenarios need (the stack's policy lists them all)."""
    return [service for scenario in chosen for service in scenario.services]


def prepare(run: Run, chosen: list[Scenario]) -> None:
    """Deploy each workload's healthy first version, and wait until it is known good."""
    for scenario in chosen:
        if scenario.setup is not None:
            scenario.setup(run)
            continue
        for name in scenario.workloads:
            service = "cart" if name.startswith("cart") else name
            run.cluster.create(
                name,
                image(service, "1.0.0"),
                replicas=scenario.replicas.get(name, 2),
                service=service,
            )
    run.cluster.wait_rolled_out(*(n for s in chosen for n in s.workloads))
    # Old enough to be a known-good target, and older than no_deploy's lookback.
    time.sleep(seconds(TIMINGS["known_good_min_age"]) + 2)


def play(run: Run, scenario: Scenario) -> Result:
    """Run one scenario; the result says whether its expectation held."""
    result = Result(scenario.name, scenario.expectation)
    result.links["dashboard"] = f"{run.stack.receiver.url}/"
    if scenario.mode != run.stack.mode:
        run.stack.reconfigure(scenario.mode)
    try:
        scenario.play(run, result)
        result.passed = True
    except Failed as exc:
        result.error = str(exc)
    except Exception as exc:  # a broken game day is a failed one, with the reason kept
        result.error = f"{type(exc).__name__}: {exc}"
    return result
