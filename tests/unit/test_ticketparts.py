"""The compact forms PagerDuty's custom details carry of the judgment and of what changed
(workers/ticketparts.py): numbers and words, no points, bounded."""

from workers.ticketparts import changes_details, judgment_details


def test_the_judgment_for_the_page_has_each_kpis_numbers_and_no_points():
    judgment = {
        "verdict": "confirmed",
        "mode": "require",
        "kpis": [
            {
                "name": "5xx ratio",
                "verdict": "confirmed",
                "how": "side_by_side",
                "n_new": 20,
                "n_old": 40,
                "median_new": 0.05,
                "median_old": 0.001,
                "p_value": 1e-9,
                "shift": 0.049,
                "allowed": 0.0001,
                "series": {"new": [[0, 0.05]] * 240, "old": []},
                "queries": {"new": "q", "old": "q"},
            },
            {"name": "p99", "verdict": "nodata", "reason": "Prometheus could not answer"},
        ],
    }
    found = judgment_details(judgment)
    assert found["verdict"] == "confirmed" and found["mode"] == "require"
    assert found["kpis"]["5xx ratio"]["p_value"] == 1e-9
    assert "series" not in found["kpis"]["5xx ratio"]
    assert found["kpis"]["p99"]["n_new"] is None
    assert judgment_details({}) is None


def test_what_changed_for_the_page_is_the_first_twenty_lines():
    changes = [
        {"where": "container app", "field": f"env V{i}", "before": "1", "after": "2"}
        for i in range(25)
    ]
    evidence = {"changes": {"changes": changes, "more": 3}}
    lines = changes_details(evidence)
    assert lines[0] == "container app: env V0: 1 -> 2"
    assert len(lines) == 21 and lines[-1] == "... and 8 more"
    assert changes_details(None) is None and changes_details({}) is None


def test_a_damaged_judgment_record_gives_fewer_rows_not_an_error():
    from workers.ticketparts import judgment_section

    for damaged in (
        {"verdict": "confirmed"},
        {"verdict": "confirmed", "kpis": "x"},
        {"verdict": "confirmed", "kpis": ["x", {"name": "p", "p_value": "x", "n_new": True}]},
    ):
        text = judgment_section(damaged)
        assert text.startswith("*confirmed*")
        assert judgment_details(damaged)["verdict"] == "confirmed"
