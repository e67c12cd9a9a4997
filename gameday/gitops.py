"""The `gitops_self_heal` game day: a demo workload Argo CD deploys from Git, self-healing.

Before Backstop rolled back through Argo CD, its revert of such a workload was undone by
self-heal within seconds while Backstop reported the rollback verified. Here the Argo CD
stand-in (testbed/gitops/argocd.py, a thread of the game-day process) runs against the
game day's cluster: the GitOps CRDs are installed where the cluster lacks them, a local Git
repository holds the workload's manifest, and an Application with automated sync and
self-heal (after SELF_HEAL_TIMEOUT) deploys it into the game day's namespace, where
Backstop's policy says Applications live (`owners.argocd.namespace`, gameday/stack.py).

The bad release is a commit to Git; Argo CD syncs it, the real alert fires, and Backstop
must roll back through Argo CD: freeze the Application's auto-sync, sync the history entry
that deployed the good version, verify; and the good version must then survive HOLD
seconds of the stand-in's reconcile passes, each of which would put Git's bad head back
if auto-sync were still on.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kubernetes import client

from core.records import Decision
from gameday.cluster import deployment
from gameday.scenarios import Result, Run, Scenario, image
from gameday.scenarios import _rolled_back as rolled_back
from gameday.stack import Service, Stack
from testbed.gitops import argocd, crds
from testbed.gitops.cluster import Cluster
from testbed.gitops.git import GitRepo

NAME = "gitops_self_heal"
APP = "payments"  # the Application and the Deployment it deploys
FILE = f"apps/{APP}/deployment.yaml"
SELF_HEAL_TIMEOUT = 3.0  # seconds after the last sync before self-heal repairs drift
PERIOD = 0.5  # seconds between the stand-in's reconcile passes
HOLD = 60.0  # how long the good version must survive those passes after the rollback
SETUP_TIMEOUT = 90.0


class ArgoGitOps:
    """Argo CD (the stand-in) deploying the demo workload APP from a local Git repository."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.namespace = stack.namespace
        self.repo: GitRepo | None = None
        self.controller: argocd.ArgoCD | None = None
        self.cluster: Cluster | None = None
        self.good_commit = ""

    def start(self, good_image: str) -> None:
        """Install the CRDs, commit the good version, start Argo CD, create the
        Application; stopped with the stack."""
        self.stack.add(self)
        self.cluster = Cluster(self.stack.api_client())
        crds.install(self.cluster.api)
        self.repo = GitRepo.init(self.stack.workdir / "git" / APP)
        self.good_commit = self.repo.commit(
            {FILE: deployment(APP, good_image)}, f"{APP}: {good_image}"
        )
        self.controller = argocd.ArgoCD(
            self.stack.kubeconfig,
            namespace=self.namespace,
            period=PERIOD,
            self_heal_timeout=SELF_HEAL_TIMEOUT,
        ).start()
        app = argocd.application(
            APP, self.repo.url, path=f"apps/{APP}", namespace=self.namespace, self_heal=True
        )
        app["metadata"]["namespace"] = self.namespace
        self._replace(app)

    def _replace(self, app: dict) -> None:
        """Create the Application; one left by an earlier run (a kept namespace) goes first."""
        try:
            self.cluster.create(app)
            return
        except client.ApiException as error:
            if error.status != 409:
                raise
        self.cluster.delete(app)
        deadline = time.monotonic() + 30
        while self.application() is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Application {APP} from an earlier run not deleted")
            time.sleep(0.2)
        self.cluster.create(app)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        if self.cluster is not None:
            self.cluster.close()

    def release(self, bad_image: str) -> str:
        """Commit the bad version to Git, as a developer's merge would; its sha."""
        return self.repo.set_image(FILE, "app", bad_image, f"{APP}: {bad_image}")

    def application(self) -> dict | None:
        return self.cluster.get(argocd.API, "Application", self.namespace, APP)

    def hold(self, run: Run, wanted: str, seconds: float) -> tuple[int, list[str]]:
        """Watch `seconds` of reconcile passes; the passes seen and any other image the
        workload ran meanwhile (checked after every third pass)."""
        first, strays = self.controller.passes, []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.controller.wait_passes(3)
            found = run.cluster.image(APP)
            if found != wanted and found not in strays:
                strays.append(found)
        return self.controller.passes - first, strays


def setup(run: Run) -> None:
    """`prepare`'s part: Argo CD deploys the first, healthy version from Git."""
    argo = ArgoGitOps(run.stack)
    run.parts[NAME] = argo
    good = image(APP, "1.0.0")
    argo.start(good)
    deadline = time.monotonic() + SETUP_TIMEOUT
    while _live_image(run) != good:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Argo CD did not deploy {good}: {argo.controller.errors}")
        time.sleep(0.5)


def _live_image(run: Run) -> str | None:
    try:
        return run.cluster.image(APP)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def gitops_self_heal(run: Run, result: Result) -> None:
    argo: ArgoGitOps = run.parts[NAME]  # type: ignore[assignment]
    good, bad = image(APP, "1.0.0"), image(APP, "1.1.0-errors")
    result.at("bad version committed to Git", datetime.now(UTC))
    bad_commit = argo.release(bad)
    run.wait(lambda: _live_image(run) == bad, "Argo CD to sync the bad commit", 60)
    result.at("Argo CD synced it", datetime.now(UTC))
    rollback = rolled_back(run, result, APP, good)
    decision = Decision.model_validate(run.stack.api("GET", f"/decisions/{rollback.decision_id}"))
    owner = decision.rollout.owner if decision.rollout else None
    result.check(
        "the watcher found Argo CD as the owner",
        owner is not None and (owner.kind, owner.name) == ("argocd", APP),
        str(owner),
    )
    # No API lists frozen owners yet: the rollback's own steps say what was done.
    steps = {step.name: step for step in rollback.steps}
    froze, synced = steps.get("owner"), steps.get("revert")
    result.check(
        "the rollback froze the Application's auto-sync first",
        froze is not None and froze.status == "ok" and "auto-sync disabled" in froze.detail,
        froze.detail if froze else f"no owner step in {list(steps)}",
    )
    result.at("auto-sync frozen", froze.finished_at if froze else None)
    result.check(
        "the revert went through Argo CD",
        synced is not None and "Argo CD synced" in synced.detail,
        synced.detail if synced else "no revert step",
    )
    app = argo.application() or {}
    automated = (app.get("spec", {}).get("syncPolicy") or {}).get("automated")
    result.check(
        "the Application's auto-sync is off",
        not automated or automated.get("enabled") is False,
        str(automated),
    )
    last = (app.get("status", {}).get("history") or [{}])[-1]
    result.check(
        "Argo CD's history: Backstop synced the good commit",
        last.get("revision") == argo.good_commit
        and last.get("initiatedBy") == {"username": "backstop"},
        str(last),
    )
    passes, strays = argo.hold(run, good, HOLD)
    result.at(f"held through {passes} reconcile passes", datetime.now(UTC))
    result.overhead["argocd_passes_held"] = passes
    result.check(
        f"the good image still runs after {HOLD:.0f} s of Argo CD's reconcile passes",
        not strays and run.cluster.image(APP) == good,
        f"also ran {strays}; now {run.cluster.image(APP)}",
    )
    result.check(
        "Git still holds the bad commit (frozen, not reverted in Git)",
        argo.repo.head() == bad_commit,
    )
    result.check(
        "the Argo CD stand-in had no errors",
        not argo.controller.errors,
        str(argo.controller.errors),
    )


SCENARIO = Scenario(
    NAME,
    "Argo CD with self-heal deployed the bad commit: rolled back through Argo CD, "
    f"auto-sync frozen, the good version holds for {HOLD:.0f} s",
    [Service(APP)],
    gitops_self_heal,
    setup=setup,
)
