"""The game days' framework: a Scenario, the Run it plays against, its Result, and the
helpers scenarios share (the common ending of a verified rollback among them).

Every scenario has its own workload, so they share one stack. `prepare` deploys every
workload's first, healthy version at once and waits until those are old enough to be
known good; each `play` then breaks something and checks Backstop's reaction through its
JSON API, the cluster, and the Jira and PagerDuty doubles. The scenarios themselves are in
plays.py, judged.py and gitops.py; catalog.py lists them all.
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


# -- scenarios -------------------------------------------------------------------------------


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
