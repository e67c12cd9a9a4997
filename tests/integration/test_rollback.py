"""Rollbacks on the real control plane: pre-flight, evidence, revert, rollout, verification."""

import threading
import time

import pytest
from kubernetes import client

from core import queues
from core.integrations.kubernetes import Conflict, Kube
from core.models import Workload
from tests.conftest import wait_for
from tests.workloads import FAST, bad_release, set_image, workload_body

pytestmark = pytest.mark.integration


def rolled_out(stack, name: str) -> bool:
    """The Deployment's latest revision is fully rolled out (the controller is done with it)."""
    found = stack.apps.read_namespaced_deployment(name, stack.namespace)
    status = found.status
    return (
        status.observed_generation == found.metadata.generation
        and status.updated_replicas == status.replicas == status.available_replicas == 2
    )


def test_deployment_reverted_to_the_previous_revision(make_stack):
    stack = make_stack()
    workload = bad_release(stack)
    # Settled first, so that the controller's own status updates cannot make the revert
    # conflict (a 409 is retried from pre-flight: a second step; covered below).
    wait_for(lambda: rolled_out(stack, "checkout"), message="revision 2 rolled out")
    decision = stack.alert(workload)
    assert decision.outcome == "rollback"
    rollback = stack.roll_back(decision)
    assert (rollback.status, rollback.reason) == ("verified", "rollout_healthy_only")
    assert rollback.verification["mode"] == "rollout_only"
    assert (rollback.bad_revision, rollback.target_revision) == ("2", "1")
    assert rollback.created_revision == "3" == stack.revision("checkout")
    assert stack.image("checkout") == "shop/checkout:1"
    assert [s.name for s in rollback.steps] == [
        "lock",
        "preflight",
        "evidence",
        "revert",
        "rollout",
        "verify",
    ]
    assert all(s.status == "ok" for s in rollback.steps)
    assert rollback.patch_type == "json"
    assert [op["path"] for op in rollback.patch] == [
        "/metadata/resourceVersion",
        "/spec/template",
        "/metadata/annotations",
    ]
    assert {"all checks": all(c["ok"] for c in rollback.preflight.values())} == {"all checks": True}
    evidence = stack.store.rollbacks.evidence(rollback.id)
    assert len(evidence["pods"]) == 2
    assert all(p["containers"][0]["image"] == "shop/checkout:2" for p in evidence["pods"])
    created = stack.store.rollouts.by_revision(workload, "3")
    assert created.by_backstop and created.rollback_of == "2"
    assert rollback.incident_job_id == queues.incident_job_id(rollback.id)
    # Running the job again (a duplicate delivery, a retry) changes nothing.
    again = stack.roll_back(decision)
    assert again.status == "verified" and stack.revision("checkout") == "3"


def test_dry_run_records_the_patch_and_changes_nothing(make_stack):
    stack = make_stack({**FAST, "mode": "dry-run"})
    workload = bad_release(stack)
    decision = stack.alert(workload)
    assert decision.outcome == "dry_run"
    rollback = stack.roll_back(decision, mode="dry-run")
    assert (rollback.status, rollback.target_revision) == ("dry_run", "1")
    assert rollback.patch[1]["value"]["spec"]["containers"][0]["image"] == "shop/checkout:1"
    assert stack.revision("checkout") == "2" and stack.image("checkout") == "shop/checkout:2"
    assert rollback.incident_job_id is None


def test_a_paused_deployment_is_not_touched(make_stack):
    stack = make_stack()
    workload = bad_release(stack)
    stack.apps.patch_namespaced_deployment("checkout", stack.namespace, {"spec": {"paused": True}})
    rollback = stack.roll_back(stack.alert(workload))
    assert (rollback.status, rollback.reason) == ("blocked", "paused_in_cluster")
    assert stack.revision("checkout") == "2"


def test_migration_guard_blocks_a_revert_across_a_schema_change(make_stack):
    stack = make_stack()
    marker = "backstop.io/schema-version"
    workload = bad_release(stack, template_annotations=({marker: "41"}, {marker: "42"}))
    rollback = stack.roll_back(stack.alert(workload))
    assert (rollback.status, rollback.reason) == ("blocked", "migration_guard")
    assert "from 41 to 42" in rollback.preflight["migration"]["detail"]
    assert stack.image("checkout") == "shop/checkout:2"


def test_a_target_that_was_itself_broken_is_skipped(make_stack):
    stack = make_stack()
    workload = bad_release(stack)
    first = stack.alert(workload, "High5xx")  # an alert blames revision 2...
    assert first.outcome == "rollback" and first.rollout.revision == "2"
    set_image(stack.apps, stack.namespace, "checkout", "shop/checkout:3")  # ...a fix ships...
    wait_for(lambda: stack.revision("checkout") == "3", message="revision 3")
    stack.record_history("Deployment")
    # ...and breaks too. (Both releases sit in one lookback window, so the engine would call
    # this ambiguous; a human approved rolling back revision 3.)
    third = stack.store.rollouts.by_revision(workload, "3")
    decision = first.model_copy(
        update={"id": "human-approved", "episode_id": "human-approved", "rollout": third}
    )
    stack.store.decisions.save(decision)
    rollback = stack.roll_back(decision)
    walked = rollback.preflight["known_good"]["walked"]
    assert [(w["revision"], w["ok"]) for w in walked] == [("2", False), ("1", True)]
    assert "blamed" in walked[0]["why"]
    assert rollback.target_revision == "1" and rollback.status == "verified"
    assert stack.image("checkout") == "shop/checkout:1"


def test_no_known_good_revision_blocks(make_stack):
    stack = make_stack({**FAST, "defaults": {**FAST["defaults"], "known_good_min_age": "1h"}})
    workload = bad_release(stack)
    rollback = stack.roll_back(stack.alert(workload))
    assert (rollback.status, rollback.reason) == ("blocked", "no_known_good_revision")
    assert stack.revision("checkout") == "2"


def test_a_prior_version_that_never_becomes_ready_fails_and_freezes(kube, make_stack):
    stack = make_stack({**FAST, "defaults": {**FAST["defaults"], "rollout_timeout": "4s"}})
    workload = bad_release(stack)
    kube.hold_unready("shop/checkout:1")
    time.sleep(1.5)  # the pod helper re-reads its hold list every 0.5 s
    try:
        rollback = stack.roll_back(stack.alert(workload))
    finally:
        kube.release("shop/checkout:1")
    assert (rollback.status, rollback.reason) == ("verification_failed", "rollout_incomplete")
    pause = stack.store.automation.paused(workload)
    assert pause["scope"] == "workload" and pause["by"] == "backstop"
    assert workload.key in stack.store.automation.paused_workloads()  # frozen until a human


def test_a_concurrent_change_conflicts_and_is_retried_from_a_fresh_read(make_stack):
    stack = make_stack()
    workload = bad_release(stack)

    class Interfering(Kube):
        """Someone changes the Deployment between our read and our patch, `times` times."""

        def __init__(self, api, times):
            super().__init__(api)
            self.times = times
            self.conflicts = 0

        def patch(self, kind, namespace, name, body, **kwargs):
            if self.times:
                self.times -= 1
                poke = {
                    "metadata": {"annotations": {"example.com/poked": str(self.times)}},
                    "spec": {"replicas": 3},
                }
                stack.apps.patch_namespaced_deployment(name, namespace, poke)
            try:
                return super().patch(kind, namespace, name, body, **kwargs)
            except Conflict:
                self.conflicts += 1
                raise

    decision = stack.alert(workload)
    always = Interfering(stack.api, times=10)
    with pytest.raises(Conflict):  # still conflicting after 3 tries: the job raises, RQ retries
        stack.roll_back(decision, stack.executor(always))
    assert always.conflicts == 3
    assert stack.image("checkout") == "shop/checkout:2"  # nothing half-applied
    once = Interfering(stack.api, times=1)
    rollback = stack.roll_back(decision, stack.executor(once))  # the RQ retry
    assert once.conflicts == 1  # conflicted once, then succeeded from a fresh read
    assert rollback.status == "verified" and rollback.attempts == 2
    assert stack.image("checkout") == "shop/checkout:1"
    assert stack.apps.read_namespaced_deployment("checkout", stack.namespace).spec.replicas == 3


def test_statefulset_and_daemonset_are_reverted(make_stack):
    stack = make_stack()
    for kind, name, create, patch in (
        (
            "StatefulSet",
            "ledger",
            stack.apps.create_namespaced_stateful_set,
            stack.apps.patch_namespaced_stateful_set,
        ),
        (
            "DaemonSet",
            "agent",
            stack.apps.create_namespaced_daemon_set,
            stack.apps.patch_namespaced_daemon_set,
        ),
    ):
        body = workload_body(name, f"ops/{name}:1")
        if kind == "StatefulSet":
            body["spec"].update({"replicas": 2, "serviceName": name})
        create(stack.namespace, body)
        workload = Workload("default", stack.namespace, kind, name)
        stack.record_history(kind)
        wait_for(
            lambda w=workload: (
                stack.store.rollouts.by_revision(w, "1") or stack.record_history(w.kind)
            ),
            message=f"{kind} revision 1",
        )
        patch(
            name,
            stack.namespace,
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": name, "image": f"ops/{name}:2"}]}}
                }
            },
        )
        wait_for(
            lambda w=workload: (
                stack.store.rollouts.by_revision(w, "2") or stack.record_history(w.kind)
            ),
            message=f"{kind} revision 2",
        )
        rollback = stack.roll_back(stack.alert(workload))
        assert (rollback.status, rollback.target_revision) == ("verified", "1"), rollback.reason
        assert rollback.patch_type == "strategic"
        current = stack.kube.get(kind, stack.namespace, name)
        assert current["spec"]["template"]["spec"]["containers"][0]["image"] == f"ops/{name}:1"


def test_a_down_migration_job_runs_before_a_revert_across_a_schema_change(make_stack):
    marker = "backstop.io/schema-version"
    stack = make_stack(
        {
            **FAST,
            "defaults": {
                **FAST["defaults"],
                "migration_guard": {
                    "down_migration_cronjob": "migrate-down",
                    "down_migration_timeout": "60s",
                },
            },
        }
    )
    batch = client.BatchV1Api(stack.api)
    cron = {
        "kind": "CronJob",
        "metadata": {"name": "migrate-down"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "migrate", "image": "shop/migrations:42"}],
                        }
                    }
                }
            },
        },
    }
    # CronJob is batch/v1 from Kubernetes 1.21; the test control plane (1.20) has v1beta1.
    try:
        batch.create_namespaced_cron_job(stack.namespace, cron)
    except client.ApiException as exc:
        assert exc.status == 404
        client.CustomObjectsApi(stack.api).create_namespaced_custom_object(
            "batch", "v1beta1", stack.namespace, "cronjobs", {**cron, "apiVersion": "batch/v1beta1"}
        )
    workload = bad_release(stack, template_annotations=({marker: "41"}, {marker: "42"}))

    def play_job_controller():
        """No Job controller runs here: mark Backstop's Job succeeded, as it would."""
        job = wait_for(
            lambda: next(iter(batch.list_namespaced_job(stack.namespace).items), None),
            message="the down-migration Job",
        )
        batch.patch_namespaced_job_status(
            job.metadata.name, stack.namespace, {"status": {"succeeded": 1}}
        )

    helper = threading.Thread(target=play_job_controller, daemon=True)
    helper.start()
    rollback = stack.roll_back(stack.alert(workload))
    helper.join(timeout=30)
    assert (rollback.status, rollback.target_revision) == ("verified", "1"), rollback.reason
    assert "succeeded (42 -> 41)" in rollback.preflight["migration"]["detail"]
    [job] = batch.list_namespaced_job(stack.namespace).items
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env == {"BACKSTOP_FROM_SCHEMA": "42", "BACKSTOP_TO_SCHEMA": "41"}
    assert stack.image("checkout") == "shop/checkout:1"
