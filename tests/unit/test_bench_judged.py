"""bench/judged.py's pure parts: the judged service's policy and KPIs, the arms' order,
what is read from a rollback's record, and the refusal to report an unconfirmed judgment."""

import pytest

from bench import judged
from bench.latency import stages
from config.policy import Policy
from core.judging import render
from core.models import Workload

WORKLOAD = Workload("default", "judged", "Deployment", "judged-07")


def step(name: str, started: str, finished: str) -> dict:
    return {"name": name, "started_at": started, "finished_at": finished, "status": "ok"}


def confirmed_rollback() -> dict:
    return {
        "status": "verified",
        "steps": [
            step("evidence", "2026-12-05T10:00:00.010Z", "2026-12-05T10:00:00.015Z"),
            step("judgment", "2026-12-05T10:00:00.015Z", "2026-12-05T10:00:00.042500Z"),
            step("revert", "2026-12-05T10:00:00.043Z", "2026-12-05T10:00:00.050Z"),
        ],
        "judgment": {
            "verdict": "confirmed",
            "detail": "confirmed (5xx ratio: confirmed)",
            "kpis": [
                {
                    "name": "5xx ratio",
                    "how": "before_after",
                    "baseline": "the window before the rollout",
                    "n_new": 41,
                    "n_old": 41,
                    "median_new": 0.05,
                    "median_old": 0.001,
                    "p_value": 1e-12,
                    "verdict": "confirmed",
                    "series": {"new": [], "old": []},
                },
            ],
        },
    }


def test_the_policy_is_p3s_with_one_judging_service_that_backstop_accepts():
    raw = judged.policy()
    policy = Policy.model_validate(raw)
    [service] = policy.services
    assert policy.service_for({judged.ARM_LABEL: "judged", "alertname": "High5xxRatio"}) is service
    assert policy.service_for({judged.ARM_LABEL: "plain", "alertname": "High5xxRatio"}) is None
    judgment = service.judgment
    assert judgment is not None and judgment.active and judgment.mode == "require"
    assert judgment.window.total_seconds() / judgment.step.total_seconds() == 40
    assert [k.name for k in judgment.kpis] == ["5xx ratio", "p99 latency", "request rate"]
    assert [k.bad for k in judgment.kpis] == ["higher", "higher", "lower"]
    assert raw["defaults"]["min_firing"] == "0s"


def test_every_kpi_selects_one_revision_of_the_workload():
    for kpi in judged.kpis():
        query = render(kpi["query"], WORKLOAD, "5d8f7c6b9")
        assert query.count('pod_template_hash="5d8f7c6b9"') == query.count("pod_template_hash")
        assert 'deployment="judged-07"' in query and 'namespace="judged"' in query
        assert "$" not in query


def test_the_arms_alternate_which_goes_first():
    assert [judged.arm_order(pair) for pair in range(3)] == [
        ("plain", "judged"),
        ("judged", "plain"),
        ("plain", "judged"),
    ]
    assert judged.workload_name("judged", 7) == "judged-07"


def test_a_steps_duration_comes_from_its_record():
    rollback = confirmed_rollback()
    assert judged.step_ms(rollback, "judgment") == 27.5
    assert judged.step_ms(rollback, "verify") is None


def test_a_confirmed_judgment_passes_and_anything_else_stops_the_benchmark():
    judged.check_confirmed(confirmed_rollback(), 3)
    for verdict in ("not_confirmed", "inconclusive", "nodata"):
        rollback = confirmed_rollback()
        rollback["judgment"]["verdict"] = verdict
        with pytest.raises(RuntimeError, match=f"round 3: judgment {verdict}"):
            judged.check_confirmed(rollback, 3)
    unjudged = confirmed_rollback()
    unjudged["steps"] = [s for s in unjudged["steps"] if s["name"] != "judgment"]
    with pytest.raises(RuntimeError, match="round 3"):
        judged.check_confirmed(unjudged, 3)
    unreverted = confirmed_rollback()
    unreverted["steps"] = [s for s in unreverted["steps"] if s["name"] != "revert"]
    with pytest.raises(RuntimeError, match="not reverted"):
        judged.check_confirmed(unreverted, 3)


def test_the_kpis_are_summarized_without_their_series():
    [kpi] = judged.judged_kpis(confirmed_rollback())
    assert kpi == {
        "name": "5xx ratio",
        "how": "before_after",
        "baseline": "the window before the rollout",
        "n_new": 41,
        "n_old": 41,
        "median_new": 0.05,
        "median_old": 0.001,
        "p_value": 1e-12,
        "verdict": "confirmed",
    }
    other = {**kpi, "n_new": 39, "verdict": "not_confirmed"}
    other["baseline"] = "second half of the window before the rollout"
    overview = judged.kpi_overview([{"kpis": [kpi]}, {"kpis": [other]}])
    assert overview == {
        "5xx ratio": {
            "how": ["before_after"],
            "n_new_min": 39,
            "n_old_min": 41,
            "verdicts": {"confirmed": 1, "not_confirmed": 1},
            "halved": 1,
        }
    }


def test_the_judgment_is_a_stage_only_where_a_round_has_one():
    marks = {"first_seen": 1.0, "decided": 2.0, "enqueued": 3.0, "started": 8.0, "lock": 10.0}
    marks |= {"preflight": 17.0, "evidence": 21.0, "patch": 22.0}
    plain = {"ms": {**marks, "judgment": None}}
    assert "judged" not in stages([plain])
    assert stages([plain])["PATCH sent"] == 1.0
    judging = {"ms": {**marks, "judgment": 48.0, "patch": 49.0}}
    found = stages([judging])
    assert (found["judged"], found["PATCH sent"]) == (27.0, 1.0)


def test_spread_gives_nearest_rank_percentiles():
    found = judged.spread([float(v) for v in range(100, 0, -1)])
    assert found == {"p50_ms": 50.0, "p99_ms": 99.0, "min_ms": 1.0, "max_ms": 100.0}
    # Of 30 rounds, p99 is the slowest: the rank is ceil(29.7) = 30.
    assert judged.spread([float(v) for v in range(30)])["p99_ms"] == 29.0
