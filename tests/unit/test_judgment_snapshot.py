"""The judgment drawn for the incident (workers/judgment_snapshot.py): a graph per KPI with
both revisions, its CSV holding both, and a graph saying so when a KPI had no points."""

import io
from datetime import UTC, datetime

from PIL import Image

from workers.judgment_snapshot import judgment_snapshots

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
KPI = {
    "name": "5xx ratio",
    "how": "before_after",
    "verdict": "confirmed",
    "queries": {"new": 'errors{pod_template_hash="abc"}', "old": "x"},
    "windows": {"new": {"start": "2026-12-05T11:50:00+00:00", "end": "2026-12-05T12:00:00+00:00"}},
    "series": {
        "new": [[t, 0.05] for t in range(0, 600, 15)],
        "old": [[t, 0.001] for t in range(0, 600, 15)],
    },
}


def test_a_graph_per_kpi_with_both_revisions():
    [snapshot] = judgment_snapshots({"kpis": [KPI]}, now=NOW)
    assert Image.open(io.BytesIO(snapshot.png)).size == (1000, 500)
    assert snapshot.name == "judgment: 5xx ratio" and snapshot.points == 80
    assert snapshot.expr == KPI["queries"]["new"]
    rows = snapshot.csv.decode().splitlines()
    assert sum("new revision" in r for r in rows) == 40
    assert sum("old revision" in r for r in rows) == 40
    assert rows[1].startswith("2026-12-05T11:50:00")  # seconds from the new window's start


def test_a_kpi_without_points_still_gives_a_graph():
    [snapshot] = judgment_snapshots(
        {"kpis": [{"name": "p99", "verdict": "nodata", "windows": {"new": {"start": "bad"}}}]},
        now=NOW,
    )
    assert Image.open(io.BytesIO(snapshot.png)).size == (1000, 500) and snapshot.points == 0
    assert judgment_snapshots({}, now=NOW) == []
