"""The judgment in the Jira ticket (workers/ticket.py, its section from workers/ticketparts.py):
the verdict and a table of each KPI's numbers, every value escaped; no section when the
rollback was not judged."""

import re

from tests.unit.test_wiki_markup import live_markup, records
from workers import ticket

HOSTILE_NAME = "{color:red}x|y[z]"
# A table cell ends at a `|` that no backslash escapes.
CELL = re.compile(r"(?<!\\)\|")


def described(judgment: dict) -> str:
    rollback, decision = records()
    rollback.judgment = judgment
    return ticket.description(rollback, decision, links={}, snapshots=[])


def section(text: str) -> list[str]:
    """The lines of the Judgment section, up to the next heading."""
    after = text.split("h3. Judgment\n\n", 1)[1]
    return after.split("\n\nh3. ", 1)[0].splitlines()


def judgment(name: str = "5xx ratio") -> dict:
    return {
        "verdict": "confirmed",
        "mode": "require",
        "confidence": 0.98,
        "detail": f"confirmed ({name}: confirmed; p99: nodata)",
        "kpis": [
            {
                "name": name,
                "how": "before_after",
                "n_new": 40,
                "n_old": 38,
                "median_new": 0.05,
                "median_old": 0.001,
                "p_value": 1.2e-9,
                "shift": 0.049,
                "allowed": 0.0001,
                "verdict": "confirmed",
                "reason": "worse beyond the allowed effect",
                "series": {"new": [[0, 0.05]], "old": [[0, 0.001]]},
            },
            # Prometheus failed: no how, no numbers, no points.
            {"name": "p99", "n_new": 0, "n_old": 0, "verdict": "nodata", "reason": "timeout"},
        ],
    }


def test_the_judgment_section_has_the_verdict_and_a_row_per_kpi():
    text = described(judgment())
    assert text.index("h3. Deployment") < text.index("h3. Judgment") < text.index("h3. Decision")
    header, table, first, second, *reasons = section(text)
    assert header == (
        "*confirmed* (mode require, confidence 0.98): confirmed \\(5xx ratio: confirmed; p99: "
        "nodata\\)"
    )
    assert (
        table == "||KPI||how||points new/old||median new||median old||p||shift||allowed||verdict||"
    )
    assert first == "|5xx ratio|before\\_after|40/38|0.05|0.001|1.2e\\-09|0.049|0.0001|confirmed|"
    assert second == "|p99|not compared|0/0|\\-|\\-|\\-|\\-|\\-|nodata|"
    assert reasons == ["* 5xx ratio: worse beyond the allowed effect", "* p99: timeout"]
    assert "0.05]]" not in text  # the points are for the snapshot, not the ticket


def test_a_hostile_kpi_name_stays_one_cell_and_adds_no_markup():
    text = described(judgment(HOSTILE_NAME))
    escaped = "\\{color:red\\}x\\|y\\[z\\]"
    _, _, first, *_ = section(text)
    cells = CELL.split(first)[1:-1]
    assert len(cells) == 9 and cells[0] == escaped
    assert f"* {escaped}: worse beyond the allowed effect" in text
    assert live_markup(text) == live_markup(described(judgment()))


def test_no_section_when_the_rollback_was_not_judged():
    text = described({})
    assert "h3. Judgment" not in text and "||KPI||" not in text
