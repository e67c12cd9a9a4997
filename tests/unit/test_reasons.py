"""Every reason a decision can carry is explained wherever reasons are shown."""

from core.decisions import DETAILS
from core.records import DECISION_REASONS, SKIP_REASONS
from receiver.dashboard import REASONS


def test_the_dashboard_explains_every_reason():
    assert set(REASONS) == set(DECISION_REASONS)


def test_every_skip_has_a_sentence_in_the_decision_detail():
    assert set(SKIP_REASONS) <= set(DETAILS)
