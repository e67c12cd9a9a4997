"""Rolling back a workload the Helm CLI installed: Backstop reverts it, then writes Helm's
own record of the rollback, as `helm rollback` would.

Helm has no reconciler: nothing re-applies the bad release by itself, so there is nothing
to freeze. But Helm's history would still say the bad release is deployed: `helm history`
would show a lie, and the next `helm upgrade --reuse-values` or `helm rollback` start
from it.
So after Backstop's revert, release N+1 is written (core/integrations/helmstorage.py):
the target release's chart, config and manifest, `deployed`, "Rollback to <target>", and
the bad release marked `superseded`.

- **Confirm**: Helm's annotations on a workload outlive `helm uninstall`, so they prove
  nothing alone. The release's deployed revision must exist in the namespace the
  annotation names and render this very workload (its kind, name and namespace).
- **Which release is the target**: the newest release older than the deployed one that
  was live (superseded, or still marked deployed) whose manifest renders the workload with
  the target revision's container images. None (or an Argo Rollout only aborted, its
  template still the bad one): nothing is written, and the revert step says why (never a
  false record).
- **Idempotent**: the Secret written carries `backstop.io/rollback: <rollback id>`; a
  re-run finds it and writes no second revision.
- `owners.helm.record_release: false`: Backstop may not write Helm's history, and a revert
  without it is undone by the next upgrade, so the rollback is blocked and paged.
"""

from core import owners
from core.errors import IntegrationError
from core.integrations.helmstorage import (
    DEPLOYED,
    SUPERSEDED,
    History,
    ReleaseStorage,
    Stored,
    manifests,
)
from core.integrations.kubernetes import Conflict
from core.models import Workload
from core.owners import Claim
from core.records import FrozenOwner, Rollback
from workers.owners import CONFLICT_ATTEMPTS, Hand, Unfreezable
from workers.preflight import read_revisions
from workers.revert import pod_template, template_hash

ROLLBACK_MARK = "backstop.io/rollback"
# Releases whose manifest was applied in full and ran: a rollback target must be one.
WAS_LIVE = (SUPERSEDED, DEPLOYED)
# Container name -> image, per kind of container.
Images = dict[str, dict[str, str]]


class HelmHand(Hand):
    """Releases the Helm CLI installed, in the release Secrets of their namespace."""

    thaws = ()
    reverts = False

    def storage(self) -> ReleaseStorage:
        return ReleaseStorage(self.situation.objects, self.situation.clock)

    # -- confirm ----------------------------------------------------------------------------

    def confirm(self, claim: Claim, workload: Workload) -> bool:
        """The release has a deployed revision whose manifest renders this workload."""
        history = self.storage().history(claim.namespace, claim.name, status=DEPLOYED)
        deployed = history.deployed()
        return deployed is not None and rendered(deployed, workload) is not None

    # -- freeze -----------------------------------------------------------------------------

    def freeze(self, claim: Claim, workload: Workload, rollback: Rollback) -> list[FrozenOwner]:
        """Nothing re-applies a Helm release by itself: nothing to freeze. Unfreezable
        when the policy forbids writing Helm's history, without which the revert would not
        last beyond the next `helm upgrade`."""
        if not self.situation.policy.helm.record_release:
            raise Unfreezable(
                f"Helm release {claim.namespace}/{claim.name} would still say the bad "
                "release is deployed, and owners.helm.record_release is off"
            )
        return []

    # -- the record -------------------------------------------------------------------------

    def recorded(self, claim: Claim, workload: Workload, rollback: Rollback, target: str) -> str:
        """Write release N+1 recording the revert to `target`; a sentence saying what
        Helm's history now says, or why it was not updated."""
        where = f"Helm release {claim.namespace}/{claim.name}"
        try:
            return f"{where}: {self._record(claim, workload, rollback, target)}"
        except IntegrationError as exc:
            # The revert is applied already: a failure here must not fail the rollback
            # (its re-run would find the revert done and never write the record), so it
            # is said where a human reads it.
            return f"{where}: history not updated ({exc})"

    def _record(self, claim: Claim, workload: Workload, rollback: Rollback, target: str) -> str:
        storage = self.storage()
        history = storage.history(claim.namespace, claim.name)
        ours = history.marked(ROLLBACK_MARK, rollback.id)
        if ours is not None:  # a re-run: written already, perhaps not superseded yet
            superseded = self._supersede(claim, ours.version)
            return f"revision {ours.version} records this rollback (written earlier)" + (
                f"; {_versions(superseded)} superseded" if superseded else ""
            )
        if rollback.aborted_only:
            # The Rollout still holds the bad template (argo_undo off): recording the
            # target's manifest as deployed would be false.
            return "history not updated: the Rollout was aborted, its template not undone"
        current = history.deployed()
        if current is None:
            return "history not updated: no revision is marked deployed"
        wanted = self._target_images(workload, rollback, target)
        if wanted is None:
            return f"history not updated: revision {target}'s pod template is no longer found"
        match = _matching(history, current, workload, wanted)
        if match is None:
            return (
                f"history not updated: no release before revision {current.version} renders "
                f"{workload.kind} {workload.name} with {_describe(wanted)}"
            )
        try:
            written = storage.write_rollback(history, match, {ROLLBACK_MARK: rollback.id})
        except Conflict:
            return f"history not updated: revision {history.latest() + 1} was written meanwhile"
        done = f"revision {written.version} records the rollback to revision {match.version}"
        try:
            superseded = self._supersede(claim, written.version)
        except IntegrationError as exc:
            return f"{done}, but revision {current.version} is still marked deployed ({exc})"
        return f"{done} ({_versions(superseded)} superseded)"

    def _target_images(self, workload: Workload, rollback: Rollback, target: str) -> Images | None:
        """The images of revision `target`'s pod template. The revert renumbers the
        target's ReplicaSet (ControllerRevision) as the newest revision moments later, so
        when no child is numbered `target` any more, the one this rollback said it was
        restoring (by its template hash) is it."""
        children = read_revisions(self.situation.kube, workload).children
        child = children.get(target)
        if child is None:
            expected = self.situation.store.rollouts.expected_rollback(workload) or {}
            if expected.get("decision_id") == rollback.decision_id:
                wanted = expected.get("template_hash")
                child = next(
                    (c for c in children.values() if template_hash(workload.kind, c) == wanted),
                    None,
                )
        return images(pod_template(workload.kind, child)) if child is not None else None

    def _supersede(self, claim: Claim, version: int) -> list[int]:
        """Mark every revision before `version` still marked deployed superseded (Helm
        supersedes them all); the versions marked. Conflict: read again and retry."""
        storage, superseded = self.storage(), []
        for _ in range(CONFLICT_ATTEMPTS):
            history = storage.history(claim.namespace, claim.name, status=DEPLOYED)
            stale = [s for s in history.releases if s.version < version]
            try:
                for stored in stale:
                    storage.supersede(stored)
                    superseded.append(stored.version)
                return superseded
            except Conflict:
                continue
        raise Conflict(f"Helm release {claim.namespace}/{claim.name} kept changing")


def _matching(
    history: History, current: Stored, workload: Workload, wanted: Images
) -> Stored | None:
    """The newest release before `current` that was live and renders the workload with
    the `wanted` images."""
    for stored in history.older_than(current.version):
        doc = rendered(stored, workload) if stored.status in WAS_LIVE else None
        if doc is not None and images(doc.get("spec", {}).get("template")) == wanted:
            return stored
    return None


def rendered(stored: Stored, workload: Workload) -> dict | None:
    """The document of a release's manifest that is this workload: its group, kind and
    name, in its namespace (a document without one goes to the release's namespace)."""
    release_namespace = stored.release.get("namespace") or stored.secret["metadata"].get(
        "namespace", ""
    )
    group = owners.GROUPS.get(workload.kind, "")
    for doc in manifests(stored.manifest):
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not isinstance(doc.get("apiVersion"), str):
            continue
        if (
            doc.get("kind") == workload.kind
            and doc["apiVersion"].rpartition("/")[0] == group
            and meta.get("name") == workload.name
            and (meta.get("namespace") or release_namespace) == workload.namespace
        ):
            return doc
    return None


def images(template: object) -> Images:
    """Container name -> image of a pod template, per kind (init containers apart); the
    same for a Deployment, StatefulSet, DaemonSet or Rollout. Malformed parts count as
    empty (a manifest is untrusted input)."""
    spec = template.get("spec") if isinstance(template, dict) else None
    found: Images = {}
    for kind in ("initContainers", "containers"):
        listed = spec.get(kind) if isinstance(spec, dict) else None
        found[kind] = {
            str(c.get("name")): str(c.get("image", ""))
            for c in (listed if isinstance(listed, list) else [])
            if isinstance(c, dict)
        }
    return found


def _describe(wanted: Images) -> str:
    pairs = [*wanted["initContainers"].items(), *wanted["containers"].items()]
    return ", ".join(f"{name}={image}" for name, image in pairs) or "no containers"


def _versions(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers) or "none"
