"""A rollback on the real control plane records what changed from the target revision to
the bad one, from their ReplicaSets, in its evidence."""

import pytest

from tests.workloads import bad_release

pytestmark = pytest.mark.integration


def test_the_evidence_says_what_changed_from_the_target_to_the_bad_revision(make_stack):
    stack = make_stack()
    workload = bad_release(stack)
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", rollback.reason
    changes = stack.store.rollbacks.evidence(rollback.id)["changes"]
    image = [c for c in changes["changes"] if c["field"] == "image"]
    assert image == [
        {
            "where": "container checkout",
            "field": "image",
            "before": "shop/checkout:1",
            "after": "shop/checkout:2",
        }
    ]
    assert changes["more"] == 0
