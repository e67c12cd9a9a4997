"""Alert → workload and workload → rollout, pure."""

from datetime import UTC, datetime, timedelta

import pytest

from config.policy import DecisionDefaults, Policy
from core.correlation import correlate, workload_for
from core.models import Workload
from core.records import Rollout, WorkloadRecord

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WL = Workload("default", "shop", "Deployment", "checkout")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"namespace": "shop", "deployment": "checkout"}, WL),
        ({"namespace": "db", "statefulset": "pg"}, Workload("default", "db", "StatefulSet", "pg")),
        ({"namespace": "o", "daemonset": "agent"}, Workload("default", "o", "DaemonSet", "agent")),
        ({"namespace": "w", "rollout": "web"}, Workload("default", "w", "Rollout", "web")),
        (
            {"namespace": "shop", "deployment": "checkout", "cluster": "eu"},
            Workload("eu", "shop", "Deployment", "checkout"),
        ),
        ({"deployment": "checkout"}, None),
        ({"namespace": "shop"}, None),
        ({"namespace": "shop", "app": "checkout"}, None),
    ],
)
def test_workload_from_label_conventions(labels, expected):
    assert workload_for(labels, Policy(), None) == expected


def test_extra_workload_labels_name_a_deployment():
    policy = Policy.model_validate({"correlation": {"workload_labels": ["app", "service"]}})
    assert workload_for({"namespace": "shop", "service": "checkout"}, policy, None) == WL


def test_a_service_workload_wins():
    policy = Policy.model_validate(
        {
            "services": [
                {
                    "name": "c",
                    "match": {"team": "x"},
                    "workload": {
                        "kind": "DaemonSet",
                        "name": "agent",
                        "namespace": "ops",
                        "cluster": "us",
                    },
                }
            ]
        }
    )
    labels = {"team": "x", "namespace": "shop", "deployment": "checkout"}
    service = policy.service_for(labels)
    assert workload_for(labels, policy, service) == Workload("us", "ops", "DaemonSet", "agent")


def rollout(revision, minutes_before, by_backstop=False):
    return Rollout(
        workload=WorkloadRecord.of(WL),
        revision=revision,
        started_at=T - timedelta(minutes=minutes_before),
        by_backstop=by_backstop,
    )


TIMING = DecisionDefaults()


@pytest.mark.parametrize(
    ("rollouts", "status", "revision"),
    [
        ([], "none", None),
        ([rollout("2", 31)], "none", None),  # just outside the 30m lookback
        ([rollout("2", 29)], "match", "2"),
        ([rollout("2", -0.5)], "match", "2"),  # within the 60s clock skew after the start
        ([rollout("2", -2)], "predates", None),  # started 2m after the alert
        ([rollout("2", 20), rollout("3", 10)], "ambiguous", None),
        ([rollout("1", 60), rollout("2", 10)], "match", "2"),
        ([rollout("1", 20), rollout("2", 10)], "match", "2"),  # creation is not ambiguous
        ([rollout("1", 10)], "first_revision", None),
        ([rollout("2", 20), rollout("3", 10, by_backstop=True)], "match", "3"),
        ([rollout("2", 25), rollout("3", 15, by_backstop=True), rollout("4", 5)], "match", "4"),
    ],
)
def test_correlation(rollouts, status, revision):
    found = correlate(T, rollouts, TIMING)
    assert found.status == status
    assert (found.rollout.revision if found.rollout else None) == revision
    assert found.evidence["lookback"] == "30m"


def test_confidence_and_evidence():
    after = correlate(T, [rollout("2", 10)], TIMING)
    assert after.confidence == "high"
    assert after.evidence["candidates"][0]["seconds_before_alert"] == 600
    skewed = correlate(T, [rollout("2", -0.5)], TIMING)
    assert skewed.confidence == "medium"


def test_policy_warns_about_more_than_three_kill_switches():
    policy = Policy.model_validate(
        {
            "services": [
                {
                    "name": "checkout",
                    "match": {"namespace": "shop"},
                    "kill_switches": [{"alertname": f"A{i}"} for i in range(4)],
                }
            ]
        }
    )
    assert "4 kill switches" in policy.warnings()[0]


def test_timing_overrides_per_service():
    policy = Policy.model_validate(
        {"services": [{"name": "c", "match": {"a": "b"}, "cooldown": "5m"}]}
    )
    timing = policy.timing(policy.services[0])
    assert timing.cooldown == timedelta(minutes=5)
    assert timing.min_firing == DecisionDefaults().min_firing
