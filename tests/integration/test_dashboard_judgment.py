"""The judgment card of a rollback's page, over HTTP on real Redis: both series drawn and
escaped, a damaged record still rendered, the decision page linking to it."""

import pytest

from config.policy import Policy
from receiver.app import create_app
from tests.integration.test_dashboard_http import logged_in, seed

pytestmark = pytest.mark.integration


@pytest.fixture
def dashboard(make_settings, users_file):
    """The app, and its store."""
    app = create_app(make_settings(users_file=users_file), policy=Policy())
    return app, app.extensions["backstop"].store


JUDGMENT = {
    "verdict": "confirmed",
    "mode": "require",
    "confidence": 0.98,
    "detail": "confirmed (<b>5xx</b>: confirmed; p99: nodata)",
    "kpis": [
        {
            "name": "<script>alert(1)</script>",
            "queries": {"new": 'rate(x{hash="<new>"}[1m])', "old": "rate(x[1m])"},
            "how": "side_by_side",
            "windows": {
                "new": {"start": "2026-12-01T10:00:00+00:00", "end": "2026-12-01T10:10:00+00:00"},
                "old": {"start": "2026-12-01T10:00:00+00:00", "end": "2026-12-01T10:10:00+00:00"},
            },
            "series": {"new": [[0, 0.05], [2, 0.06], [4, 0.05]], "old": [[0, 0.001], [2, 0.002]]},
            "n_new": 3,
            "n_old": 2,
            "median_new": 0.05,
            "median_old": 0.0015,
            "u": 6.0,
            "p_value": 0.0123456,
            "shift": 0.048,
            "allowed": 0.00015,
            "verdict": "confirmed",
            "reason": "worse <img src=x>",
        },
        {"name": "p99", "verdict": "nodata", "reason": "Prometheus could not answer"},
    ],
}


def test_a_judged_rollback_shows_each_kpi_as_two_series_escaped(dashboard):
    app, store = dashboard
    _, rollback = seed(store)
    rollback.judgment = JUDGMENT
    store.rollbacks.save(rollback)
    page = logged_in(app, "victor").get(f"/rollbacks/{rollback.id}").text
    assert 'id="judgment" data-testid="judgment"' in page
    assert page.count('data-testid="judgment-kpi"') == 2
    assert page.count("<polyline ") == 2 and page.count('<circle class="dot new"') == 3
    assert 'data-testid="series-new" points="42.0,' in page
    assert 'data-testid="series-old" points="42.0,' in page
    assert 'data-testid="median-new"' in page and 'data-testid="median-old"' in page
    assert ">0 s</text>" in page and ">4 s</text>" in page  # the time axis
    assert "new: revision 2" in page and "old: revision 1" in page  # the legend
    assert "0.05 new, 0.0015 old" in page and "3 new, 2 old" in page
    assert "0.01235" in page and "(U 6)" in page and "0.048" in page and "(allowed 0.00015)" in page
    assert "side by side" in page and "2026-12-01 10:00:00 UTC to 2026-12-01 10:10:00 UTC" in page
    assert page.count("No points to draw.") == 1  # the KPI without data
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'aria-label="&lt;script&gt;alert(1)&lt;/script&gt;: new' in page
    assert "<img src=x>" not in page and "<b>5xx</b>" not in page and '"<new>"' not in page


def test_a_damaged_judgment_draws_what_it_can(dashboard):
    app, store = dashboard
    _, rollback = seed(store)
    rollback.judgment = {
        "verdict": ["confirmed"],
        "mode": None,
        "kpis": [
            None,
            "5xx",
            {"name": 5, "series": [1], "windows": "x", "queries": [1], "how": 3, "n_new": None,
             "verdict": {"a": 1}, "median_new": "high"},
            {"name": "ok", "series": {"new": "x", "old": [[0, 1]]}, "windows": {"new": 1}},
        ],
    }  # fmt: skip
    store.rollbacks.save(rollback)
    answer = logged_in(app, "victor").get(f"/rollbacks/{rollback.id}")
    assert answer.status_code == 200
    assert answer.text.count('data-testid="judgment-kpi"') == 2
    assert answer.text.count("<polyline ") == 1 and "not compared" in answer.text


def test_a_decision_links_to_its_rollbacks_judgment(dashboard):
    app, store = dashboard
    decision, rollback = seed(store)
    decision.job_id = rollback.id
    store.decisions.save(decision)
    client = logged_in(app, "victor")
    assert 'data-testid="decision-judgment"' not in client.get(f"/decisions/{decision.id}").text
    rollback.judgment = {**JUDGMENT, "verdict": "<i>not_confirmed</i>"}
    store.rollbacks.save(rollback)
    page = client.get(f"/decisions/{decision.id}").text
    assert f'href="/rollbacks/{rollback.id}#judgment"' in page
    assert "&lt;i&gt;not_confirmed&lt;/i&gt;" in page and "<i>not" not in page


def test_an_unjudged_rollback_has_no_judgment_card(dashboard):
    app, store = dashboard
    _, rollback = seed(store)
    page = logged_in(app, "victor").get(f"/rollbacks/{rollback.id}").text
    assert 'data-testid="judgment"' not in page
