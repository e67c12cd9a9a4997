"""Several rollouts could explain an alert: for a service that judges revisions, the
decision waits while each candidate is judged against the revision before it
(workers/candidates.py), then decides again. A real receiver and Redis; Prometheus and the
cluster are stand-ins of Backstop's own interfaces."""

from datetime import timedelta

import pytest

from core.decisions import Engine
from core.errors import PermanentError
from core.records import utcnow
from tests.integration.test_decision_paths import CHECKOUT, Harness
from tests.prometheus_standin import Prometheus
from workers.candidates import CandidateJudge

QUERY = 'errors{namespace="$namespace",deployment="$name",pod_template_hash="$hash"}'


def policy(mode: str = "require") -> dict:
    judgment = {"mode": mode, "window": "5m", "step": "15s"}
    judgment["kpis"] = [{"name": "5xx", "query": QUERY, "min_samples": 8}]
    service = {"name": "checkout", "match": {"deployment": "checkout"}, "judgment": judgment}
    return {"mode": "enforce", "services": [service]}


def level(value, *, since=None, until=None):
    """A KPI at `value` while the revision's pods served (from `since`, until `until`)."""

    def at(t):
        if (since and t < since) or (until and t > until):
            return None
        return value

    return at


class Scene:
    """Three revisions: 1 (long live), 2 twenty minutes ago, 3 ten minutes ago; an alert
    about checkout that began five minutes ago; rollouts carry their pod hashes."""

    def __init__(self, make_settings, mode="require", hashes=True):
        self.h = Harness(make_settings, **policy(mode))
        now = self.h.now
        self.second, self.third = now - timedelta(minutes=20), now - timedelta(minutes=10)
        for revision, minutes, previous in (("1", 60, None), ("2", 20, "1"), ("3", 10, "2")):
            extra = {"template_hash": f"h{revision}"} if hashes else {}
            self.h.deploy(revision, minutes_ago=minutes, previous=previous, **extra)
        self.alert = self.h.alert()
        decision = self.h.send(self.alert)[-1]
        assert (decision["outcome"], decision["reason"]) == ("deferred", "judging_candidates")
        self.episode_id = decision["id"]

    def judge(self, prometheus, kube_for=None):
        state = self.h.state

        def no_cluster(name):
            raise PermanentError(f"no cluster {name} in this test")

        engine = Engine(state.store, state.policy, state.store.redis, utcnow)
        judge = CandidateJudge(
            store=state.store,
            policy=state.policy,
            engine=engine,
            prometheus=prometheus,
            kube_for=kube_for or no_cluster,
            clock=utcnow,
        )
        result = judge.run(self.episode_id)
        return result, state.store.decisions.get(self.episode_id)


@pytest.fixture
def scene(make_settings):
    return Scene(make_settings)


def test_of_two_rollouts_the_one_confirmed_worse_is_rolled_back(scene):
    prometheus = Prometheus(
        {
            "h1": level(0.003, until=scene.second),
            "h2": level(0.003, since=scene.second, until=scene.third),
            "h3": level(0.05, since=scene.third),
        }
    )
    result, decision = scene.judge(prometheus)
    assert result["judged"] == 2
    assert (decision.outcome, decision.reason) == ("rollback", "enqueued")
    assert decision.rollout.revision == "3" and decision.confidence == "judged"
    judged = decision.candidates
    assert judged["picked"] == "3"
    assert judged["revisions"]["3"]["verdict"] == "confirmed"
    assert judged["revisions"]["3"]["against"] == "2"
    assert judged["revisions"]["2"]["verdict"] == "not_confirmed"
    assert "series" not in judged["revisions"]["3"]["kpis"][0]  # the numbers, not the points
    assert decision.evidence["candidate_judgments"] == judged
    assert [step.reason for step in decision.history] == ["judging_candidates", "enqueued"]
    assert scene.h.state.store.automation.claimed(CHECKOUT, "3") == decision.id


def test_when_the_first_is_the_bad_one_it_is_picked(scene):
    # Revision 2 broke it; revision 3 (a config change) kept the same errors: 3 is no
    # worse than 2, 2 is worse than 1.
    prometheus = Prometheus(
        {
            "h1": level(0.003, until=scene.second),
            "h2": level(0.05, since=scene.second, until=scene.third),
            "h3": level(0.05, since=scene.third),
        }
    )
    _, decision = scene.judge(prometheus)
    assert decision.candidates["picked"] == "2"
    assert decision.rollout.revision == "2" and decision.outcome == "rollback"


def test_two_confirmed_rollouts_are_left_to_a_human(scene):
    prometheus = Prometheus(
        {
            "h1": level(0.001, until=scene.second),
            "h2": level(0.01, since=scene.second, until=scene.third),
            "h3": level(0.1, since=scene.third),
        }
    )
    _, decision = scene.judge(prometheus)
    assert (decision.outcome, decision.reason) == ("skipped", "ambiguous")
    assert decision.candidates["picked"] is None
    assert "all confirmed worse" in decision.candidates["why"]
    assert decision.evidence["candidate_judgments"]["revisions"]["2"]["verdict"] == "confirmed"


def test_no_confirmed_rollout_is_left_to_a_human(scene):
    same = 0.02
    prometheus = Prometheus(
        {
            "h1": level(same, until=scene.second),
            "h2": level(same, since=scene.second, until=scene.third),
            "h3": level(same, since=scene.third),
        }
    )
    _, decision = scene.judge(prometheus)
    assert (decision.outcome, decision.reason) == ("skipped", "ambiguous")
    assert {v["verdict"] for v in decision.candidates["revisions"].values()} == {"not_confirmed"}


def test_advise_mode_records_the_verdicts_and_picks_nothing(make_settings):
    scene = Scene(make_settings, mode="advise")
    prometheus = Prometheus({"h2": level(0.003), "h3": level(0.05, since=scene.third)})
    _, decision = scene.judge(prometheus)
    assert (decision.outcome, decision.reason) == ("skipped", "ambiguous")
    assert decision.candidates["picked"] is None and "advise" in decision.candidates["why"]


def test_revisions_without_hashes_and_no_cluster_are_no_data(make_settings):
    scene = Scene(make_settings, hashes=False)
    _, decision = scene.judge(Prometheus({}))
    assert (decision.outcome, decision.reason) == ("skipped", "ambiguous")
    verdict = decision.candidates["revisions"]["3"]
    assert verdict["verdict"] == "nodata" and "no cluster default" in verdict["detail"]


def test_prometheus_away_is_no_data_not_a_stuck_decision(scene):
    _, decision = scene.judge(None)
    assert (decision.outcome, decision.reason) == ("skipped", "ambiguous")
    assert {v["verdict"] for v in decision.candidates["revisions"].values()} == {"nodata"}


def test_an_episode_that_resolved_meanwhile_is_closed(scene):
    resolved = {**scene.alert, "status": "resolved", "endsAt": scene.h.now.isoformat()}
    assert scene.h.outcome(resolved) == "skipped: resolved"
    result, decision = scene.judge(Prometheus({}))
    assert result["judged"] == 0 and decision.reason == "resolved"
