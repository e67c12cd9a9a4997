"""What an incident carries of the judgment besides the ticket (workers/dossier.py): a
snapshot per KPI drawing both revisions, and a compact `judgment` in PagerDuty's custom
details (numbers and words, never the points). On the test Redis, without Prometheus."""

import json

import pytest

from config.policy import Policy
from core.records import Incident
from core.store import Store
from tests.unit.test_judgment_snapshot import KPI, NODATA
from tests.unit.test_snapshots import image
from tests.unit.test_wiki_markup import records
from workers.dossier import Dossier

FIELDS = {
    *("verdict", "how", "n_new", "n_old"),
    *("median_new", "median_old", "p_value", "shift", "allowed"),
}


@pytest.fixture
def judged(redis_client, make_settings):
    """A dossier on the test Redis, and a rollback whose judgment has a confirmed KPI with
    240 points a side and a KPI Prometheus could not answer."""
    store = Store(redis_client, Policy())
    settings = make_settings(public_url="https://backstop.example")
    rollback, decision = records()
    assert decision.rollout is not None
    decision.rollout.template_hash = "5d4f8b7c9"
    many = {side: [[t * 2.5, 0.05] for t in range(240)] for side in ("new", "old")}
    rollback.judgment = {
        "verdict": "confirmed",
        "mode": "require",
        "confidence": 0.98,
        "detail": "confirmed (5xx ratio: confirmed; p99 latency: nodata)",
        "kpis": [{**KPI, "series": many}, NODATA],
    }
    return Dossier(store, Policy(), settings, None), rollback, decision


def test_each_judged_kpi_gets_a_snapshot_of_both_revisions(judged):
    dossier, rollback, decision = judged
    shots = dossier.snapshots(rollback, decision)
    assert [s["name"] for s in shots] == ["judgment: 5xx ratio", "judgment: p99 latency"]
    assert [s["points"] for s in shots] == [480, 0]
    assert [s["file"] for s in shots] == ["snapshot-1", "snapshot-2"]
    for shot in shots:
        assert image(dossier.store.snapshots.png(shot["id"])).size == (1000, 500)
    rows = dossier.store.snapshots.csv(shots[0]["id"]).decode().splitlines()[1:]
    assert sum("side=new revision (hash 5d4f8b7c9)" in r for r in rows) == 240
    assert sum("side=old revision (revision 1)" in r for r in rows) == 240
    # PagerDuty's images: the graph with points, not the one saying "no data".
    incident = Incident(id=rollback.id, key="k", snapshots=shots)
    [picture] = dossier.images(incident)
    assert picture["alt"] == "judgment: 5xx ratio"
    assert picture["src"].startswith(f"https://backstop.example/snapshots/{shots[0]['id']}.png?")


def test_pagerdutys_details_carry_the_judgment_compactly(judged):
    dossier, rollback, decision = judged
    details = dossier.details(rollback, decision, Incident(id=rollback.id, key="k"))
    found = details["judgment"]
    assert (found["verdict"], found["mode"]) == ("confirmed", "require")
    assert set(found["kpis"]) == {"5xx ratio", "p99 latency"}
    confirmed, nodata = found["kpis"]["5xx ratio"], found["kpis"]["p99 latency"]
    assert set(confirmed) == set(nodata) == FIELDS  # no series, queries, windows or reason
    assert confirmed == {key: KPI[key] for key in FIELDS}
    assert nodata["verdict"] == "nodata" and nodata["p_value"] is None
    # 480 points in the record, a few hundred bytes on the page.
    assert len(json.dumps(found, allow_nan=False)) < 600
    rollback.judgment = {}
    assert dossier.details(rollback, decision, Incident(id="r1", key="k"))["judgment"] is None
