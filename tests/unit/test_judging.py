"""The judgment step (core/judging.py) against a stand-in of Backstop's own Prometheus
interface: which samples are compared (side by side, before/after, the trend guard), how
the queries are filled in, and what each verdict does in each mode."""

from datetime import UTC, datetime, timedelta

import pytest

from config.judgment import JudgmentPolicy
from core.errors import TransientError
from core.judging import consequence, judge, render
from core.models import Workload
from tests.prometheus_standin import Prometheus

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
DEPLOYED = NOW - timedelta(minutes=5)
WEB = Workload("default", "shop", "Deployment", "web")
QUERY = 'sum(rate(errors{namespace="$namespace",app="$name",pod_template_hash="$hash"}[1m]))'


def policy(**fields) -> JudgmentPolicy:
    kpi = {"name": "errors", "query": QUERY, "relative": 0.1, "min_samples": 8}
    return JudgmentPolicy.model_validate({"window": "5m", "step": "15s", "kpis": [kpi], **fields})


def flat(value, since=None, until=None):
    def level(t):
        if (since and t < since) or (until and t > until):
            return None
        return value

    return level


def run(prometheus, **fields):
    return judge(
        prometheus,
        policy(**fields),
        WEB,
        bad_hash="bad1",
        target_hash="good1",
        deployed_at=DEPLOYED,
        now=NOW,
    )


def test_the_query_is_filled_in_and_escaped():
    assert render(QUERY, WEB, "abc").endswith('pod_template_hash="abc"}[1m]))')
    assert 'namespace="shop",app="web"' in render(QUERY, WEB, "abc")
    assert render('x{h="$hash"}', WEB, 'a"b\\c') == 'x{h="a\\"b\\\\c"}'


def test_side_by_side_while_both_revisions_serve():
    prom = Prometheus({"bad1": flat(0.03), "good1": flat(0.003)})
    result = run(prom)
    (kpi,) = result["kpis"]
    assert result["verdict"] == "confirmed" and kpi["how"] == "side_by_side"
    assert kpi["windows"]["old"] == kpi["windows"]["new"]
    assert kpi["n_new"] >= 8 and kpi["p_value"] < 0.02


def test_an_outage_hitting_both_revisions_is_not_the_rollout():
    prom = Prometheus({"bad1": flat(0.2), "good1": flat(0.2)})
    result = run(prom)
    assert result["verdict"] == "not_confirmed"
    assert consequence("require", result["verdict"]) == "not_caused_by_rollout"


def test_before_after_once_the_old_pods_are_gone():
    prom = Prometheus({"bad1": flat(0.03, since=DEPLOYED), "good1": flat(0.003, until=DEPLOYED)})
    result = run(prom)
    (kpi,) = result["kpis"]
    assert kpi["how"] == "before_after" and result["verdict"] == "confirmed"
    assert kpi["windows"]["old"]["end"] == DEPLOYED.isoformat()
    assert kpi["baseline"] == "the window before the rollout"


def test_a_step_that_began_before_the_rollout_is_not_blamed_on_it():
    step_at = DEPLOYED - timedelta(minutes=2)

    def old(t):
        return None if t > DEPLOYED else (0.003 if t < step_at else 0.05)

    prom = Prometheus({"bad1": flat(0.05, since=DEPLOYED), "good1": old})
    result = run(prom)
    (kpi,) = result["kpis"]
    assert kpi["trend_before"]["verdict"] == "confirmed"
    assert kpi["baseline"].startswith("second half")
    assert result["verdict"] == "not_confirmed"


def test_too_little_data_is_inconclusive_and_waits_for_a_human():
    prom = Prometheus({"bad1": flat(0.03, since=NOW - timedelta(seconds=30))})
    result = run(prom)
    assert result["verdict"] in ("inconclusive", "nodata")
    assert consequence("require", result["verdict"]) == "judgment_inconclusive"


def test_prometheus_away_is_no_data_not_a_crash():
    class Away:
        def query_range(self, **_):
            raise TransientError("connection refused")

    result = run(Away())
    assert result["kpis"][0]["verdict"] == "nodata"
    assert "connection refused" in result["kpis"][0]["reason"]
    assert run(None)["kpis"][0]["verdict"] == "nodata"


def test_once_prometheus_fails_the_other_kpis_are_not_asked():
    asked = []

    class Away:
        def query_range(self, **query):
            asked.append(query["expr"])
            raise TransientError("timed out")

    kpis = [{"name": n, "query": QUERY, "min_samples": 8} for n in ("a", "b", "c")]
    result = run(Away(), kpis=kpis)
    assert len(asked) == 1  # not 6 timeouts in a row
    assert [k["verdict"] for k in result["kpis"]] == ["nodata"] * 3
    assert "not asked" in result["kpis"][2]["reason"] and "_away" not in result["kpis"][0]
    assert result["verdict"] == "nodata"


@pytest.mark.parametrize(
    ("mode", "verdict", "stop"),
    [
        ("require", "confirmed", None),
        ("require", "not_confirmed", "not_caused_by_rollout"),
        ("require", "inconclusive", "judgment_inconclusive"),
        ("require", "nodata", "judgment_inconclusive"),
        ("advise", "not_confirmed", None),
        ("advise", "inconclusive", None),
    ],
)
def test_what_each_verdict_does_in_each_mode(mode, verdict, stop):
    assert consequence(mode, verdict) == stop


def test_a_kpi_must_select_a_revision():
    with pytest.raises(ValueError, match="hash"):
        JudgmentPolicy.model_validate({"kpis": [{"name": "e", "query": "sum(errors)"}]})
    with pytest.raises(ValueError, match="three steps"):
        JudgmentPolicy.model_validate({"window": "20s", "step": "15s"})


def test_a_revision_that_no_longer_serves_is_no_side_by_side_sample():
    """Its counters are still exposed, flat: its ratio is NaN, which is no observation."""
    prom = Prometheus(
        {
            "bad1": flat(0.03, since=DEPLOYED),
            "good1": lambda t: 0.003 if t <= DEPLOYED else float("nan"),
        }
    )
    (kpi,) = run(prom)["kpis"]
    assert kpi["how"] == "before_after" and kpi["verdict"] == "confirmed"


def test_the_points_judged_are_kept_for_drawing_on_one_time_axis():
    prom = Prometheus({"bad1": flat(0.03, since=DEPLOYED), "good1": flat(0.003, until=DEPLOYED)})
    (kpi,) = run(prom)["kpis"]
    new, old = kpi["series"]["new"], kpi["series"]["old"]
    # Before/after: each side's seconds count from its own window's start.
    assert new[0][0] == 0 and old[0][0] == 0 and new[-1][0] == old[-1][0] == 300
    assert len(new) == kpi["n_new"] and len(old) == kpi["n_old"]
    assert all(0.0027 <= v <= 0.0033 for _, v in old)


def test_long_series_are_thinned_evenly_for_drawing(monkeypatch):
    monkeypatch.setattr("core.judging.SERIES_POINTS", 5)
    prom = Prometheus({"bad1": flat(0.03), "good1": flat(0.003)})
    (kpi,) = run(prom)["kpis"]
    seconds = [t for t, _ in kpi["series"]["new"]]
    assert seconds == [0, 75, 150, 225, 300] and kpi["n_new"] == 21
