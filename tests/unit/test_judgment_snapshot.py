"""The judgment drawn for the incident (workers/judgment_snapshot.py): a graph per KPI with
both revisions on one axis of seconds, its CSV holding both at their real times, a graph
saying so when a KPI had no points, and nothing the record holds can make it fail."""

import math
from datetime import UTC, datetime

import pytest

from core.records import Decision, Rollback
from tests.unit.test_snapshots import has_color, image, rgb
from tests.unit.test_wiki_markup import records
from workers import judgment_snapshot
from workers.judgment_snapshot import COLORS, judgment_snapshots, sides

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
NAMES = {"new": "new revision (hash 5d4f8b7c9)", "old": "old revision (revision 6)"}
KPI = {
    "name": "5xx ratio",
    "how": "before_after",
    "baseline": "the window before the rollout",
    "verdict": "confirmed",
    "queries": {"new": 'errors{pod_template_hash="5d4f8b7c9"}', "old": "x"},
    "windows": {
        "new": {"start": "2026-12-05T11:50:00+00:00", "end": "2026-12-05T12:00:00+00:00"},
        "old": {"start": "2026-12-05T11:40:00+00:00", "end": "2026-12-05T11:50:00+00:00"},
    },
    "series": {
        "new": [[t, 0.05 + (t % 45) / 1000] for t in range(0, 600, 15)],
        "old": [[t, 0.001 + (t % 30) / 10000] for t in range(0, 600, 15)],
    },
    "n_new": 40,
    "n_old": 40,
    "median_new": 0.05,
    "median_old": 0.001,
    "u": 1600.0,
    "p_value": 1.2e-9,
    "shift": 0.049,
    "allowed": 0.0001,
    "reason": "worse by 0.049, more than the allowed 0.0001 (p = 1.2e-09)",
}
NODATA = {
    "name": "p99 latency",
    "n_new": 0,
    "n_old": 0,
    "verdict": "nodata",
    "reason": "not asked: Prometheus could not answer an earlier KPI (timeout)",
}


@pytest.fixture
def drawn(monkeypatch):
    """What each graph was finished with (title, footer, notice, legend), by KPI name."""
    seen: dict[str, dict] = {}
    finish = judgment_snapshot.graphs.finish

    def spy(figure, axes, handles, *, title, footer, notice):
        legend = [handle.get_label() for handle in handles]
        seen[title.split(" — ")[0]] = {"title": title, "footer": footer, "notice": notice}
        seen[title.split(" — ")[0]]["legend"] = legend
        return finish(figure, axes, handles, title=title, footer=footer, notice=notice)

    monkeypatch.setattr(judgment_snapshot.graphs, "finish", spy)
    return seen


def test_a_graph_per_kpi_draws_both_revisions_and_its_csv_holds_both(drawn):
    [snapshot] = judgment_snapshots({"kpis": [KPI]}, now=NOW, names=NAMES)
    picture = image(snapshot.png)
    assert picture.size == (1000, 500)
    assert has_color(picture, rgb(COLORS["new"])) and has_color(picture, rgb(COLORS["old"]))
    assert snapshot.name == "judgment: 5xx ratio" and snapshot.points == 80
    assert snapshot.expr == KPI["queries"]["new"] and not snapshot.error
    header, *rows = snapshot.csv.decode().splitlines()
    assert header == "timestamp,series,value"
    new = [r for r in rows if "new revision (hash 5d4f8b7c9)" in r]
    old = [r for r in rows if "old revision (revision 6)" in r]
    assert len(new) == len(old) == 40 and len(rows) == 80
    # Each point at its real time: before/after, the old side's window is before the rollout.
    assert new[0].startswith("2026-12-05T11:50:00.000Z,") and new[0].endswith(",0.05")
    assert old[0].startswith("2026-12-05T11:40:00.000Z,") and old[0].endswith(",0.001")
    assert old[-1].startswith("2026-12-05T11:49:45.000Z,")

    shown = drawn["Judgment: 5xx ratio"]
    title, subtitle, numbers = shown["title"].splitlines()
    assert title == "Judgment: 5xx ratio — confirmed"
    assert subtitle.startswith("before/after:")
    assert numbers == "p 1.2e-09, shift 0.049, allowed 0.0001, points 40 new / 40 old"
    assert shown["legend"] == [NAMES["new"], "median new: 0.05", NAMES["old"], "median old: 0.001"]
    assert shown["footer"] == (
        "new: 2026-12-05 11:50:00 to 12:00:00 UTC; old: 2026-12-05 11:40:00 to 11:50:00 UTC"
    )
    assert shown["notice"] == ""


def test_the_subtitle_says_how_the_revisions_were_compared(drawn):
    side_by_side = {**KPI, "name": "a", "how": "side_by_side"}
    trend = {**KPI, "name": "b", "baseline": "second half of the window before the rollout"}
    judgment_snapshots({"kpis": [side_by_side, trend]}, now=NOW)
    assert drawn["Judgment: a"]["title"].splitlines()[1].startswith("side by side")
    assert "baseline: second half of the window before the rollout" in drawn["Judgment: b"]["title"]
    # Without names from the rollback, the sides are still told apart.
    assert drawn["Judgment: a"]["legend"][0] == "new revision"


def test_a_nodata_kpi_without_points_gives_a_graph_saying_so(drawn):
    [snapshot] = judgment_snapshots({"verdict": "nodata", "kpis": [NODATA]}, now=NOW)
    picture = image(snapshot.png)
    assert picture.size == (1000, 500) and snapshot.points == 0
    assert not has_color(picture, rgb(COLORS["new"]))
    assert snapshot.csv == b"timestamp,series,value\n" and snapshot.expr == ""
    shown = drawn["Judgment: p99 latency"]
    assert shown["notice"] == f"no data: {NODATA['reason']}"
    assert shown["title"].splitlines()[1:] == [
        "not compared",
        "p -, shift -, allowed -, points 0 new / 0 old",
    ]
    assert shown["footer"] == "windows not recorded" and shown["legend"] == []


def test_nothing_the_record_holds_makes_it_fail(drawn):
    hostile = {
        # Broken mathtext and Jira markup: drawn as the text they are.
        "name": "cost $x^$ {color:red}x|y[z]",
        "how": {"not": "a string"},
        "verdict": None,
        "queries": "not a dict",
        "windows": {"new": {"start": "yesterday", "end": 7}, "old": "x"},
        "series": {
            "new": [
                [0, 1.0],
                ["a", 1],
                [1, math.nan],
                [True, 2],
                [1, 2, 3],
                None,
                [5, math.inf],
                [1e300, 1],
            ],
            "old": "not a list",
        },
        "median_new": "0.5",
        "median_old": math.nan,
        "p_value": "tiny",
        "n_new": [1],
    }
    [snapshot] = judgment_snapshots({"kpis": [hostile, None, "x"]}, now=NOW, names=NAMES)
    assert image(snapshot.png).size == (1000, 500) and snapshot.points == 1
    # The point whose window start cannot be read counts from now.
    [row] = snapshot.csv.decode().splitlines()[1:]
    assert row == f"2026-12-05T12:00:00.000Z,side={NAMES['new']},1.0"
    shown = drawn["Judgment: cost $x^$ {color:red}x|y[z]"]
    assert shown["title"].startswith("Judgment: cost $x^$ {color:red}x|y[z] — not judged")
    assert shown["legend"] == [NAMES["new"]] and shown["notice"] == ""
    for judgment in ({}, {"kpis": "x"}, {"kpis": [None]}, None):
        assert judgment_snapshots(judgment, now=NOW) == []  # type: ignore[arg-type]


def test_the_sides_are_named_by_the_bad_revisions_hash_and_the_targets_revision():
    rollback, decision = records()
    assert decision.rollout is not None
    decision.rollout.template_hash = "5d4f8b7c9"
    assert sides(rollback, decision) == {
        "new": "new revision (hash 5d4f8b7c9)",
        "old": "old revision (revision 1)",
    }
    assert sides(rollback, None) == {
        "new": "new revision (revision 2)",
        "old": "old revision (revision 1)",
    }
    untargeted = Rollback.model_validate({**rollback.model_dump(), "target_revision": None})
    other: Decision = decision.model_copy(deep=True)
    assert other.rollout is not None
    other.rollout.revision = "9"  # a hash of another revision is not the bad one's
    assert sides(untargeted, other) == {
        "new": "new revision (revision 2)",
        "old": "old revision (the target)",
    }
