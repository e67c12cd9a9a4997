"""Rolling back through Flux: stop the Kustomization or HelmRelease (and the image
automation that writes their Git) from putting the bad version back, then revert.

Flux re-applies Git whenever it reconciles: a Kustomization force-applies every field it
manages at each `spec.interval` and each new source revision; a HelmRelease upgrades when
its values or chart change, and with drift detection on it re-applies its release at once.
So before Backstop's own revert the owner is stopped, as `flux suspend` does, and as
narrowly as Flux allows:

- Kustomization, `owners.kustomization.suspend: workload` (the default): only the workload
  is annotated `kustomize.toolkit.fluxcd.io/reconcile: disabled`, which kustomize-controller
  honours on the in-cluster object; everything else the Kustomization applies keeps
  reconciling. `kustomization`: the whole Kustomization gets `spec.suspend: true`.
- HelmRelease: `spec.suspend: true` (helm-controller has no per-object switch).
- Every ImageUpdateAutomation that commits to the owner's Git (the same GitRepository,
  under a path that overlaps the owner's) gets `spec.suspend: true`, so it does not push the
  bad tag again. With `owners.image_automation.enabled: false` such a workload is blocked.

Each object frozen carries the annotation `backstop.io/frozen-by: <rollback id>`, so a job
re-run recognises its own freeze, and is recorded with the source revision that deployed
the bad version. The freeze ends when the GitRepository's artifact revision moves past it
(for a HelmRelease, also when its spec changes: new values or a new chart version), at its
expiry, or when a human lifts it. Thawing asks Flux to reconcile at once
(`reconcile.fluxcd.io/requestedAt`, as `flux reconcile` does).
"""

import hashlib
import json
from dataclasses import dataclass

from core.integrations.kubernetes import NotFound
from core.integrations.objects import GIT_REPOSITORY, HELM_RELEASE, IMAGE_UPDATE, KUSTOMIZATION, Ref
from core.models import Workload
from core.owners import FLUX_RECONCILE, FROZEN_BY, KUSTOMIZATION_LABELS, Claim
from core.records import FrozenOwner, Rollback
from workers.owners import Hand, Unfreezable

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Rollout")


@dataclass(frozen=True)
class Freezing:
    """One rollback's freeze of a Flux owner: what every record of it says."""

    claim: Claim
    rollback: Rollback
    # The owner ([kind, namespace, name]), asked to reconcile when a freeze is thawed.
    owner: list[str]
    # The GitRepository ([namespace, name]) whose artifact revision ends the freeze.
    source: list[str] | None
    # Its revision that deployed what runs now.
    revision: str


class FluxHand(Hand):
    """What the Kustomization and HelmRelease hands share: suspending, the source that
    ends a freeze, and the image automations that write it."""

    owner: Ref
    thaws: tuple[str, ...] = ("ImageUpdateAutomation",)

    def confirm(self, claim: Claim, workload: Workload) -> bool:
        """The owner named by the workload's labels exists (and lists it, where it lists)."""
        try:
            obj = self.get(self.owner, claim.namespace, claim.name)
        except NotFound:
            return False
        return self.holds(obj, workload)

    def holds(self, obj: dict, workload: Workload) -> bool:
        return True

    def freeze(self, claim: Claim, workload: Workload, rollback: Rollback) -> list[FrozenOwner]:
        obj = self.get(self.owner, claim.namespace, claim.name)
        sources = self.sources(obj)
        automations = self._automations(sources)
        if automations and not self.situation.policy.image_automation.enabled:
            names = ", ".join(describe(a) for a in automations)
            raise Unfreezable(
                f"{names} commits to the Git {describe(obj)} applies, and "
                "owners.image_automation.enabled is off"
            )
        source = sources[0][0] if sources else None
        owner = [obj["kind"], *_where(obj)]
        freezing = Freezing(claim, rollback, owner, source, self.applied(obj, source))
        # Automations first: one pushing while the owner is being stopped would move Git.
        frozen = [self._suspend(IMAGE_UPDATE, automation, freezing) for automation in automations]
        frozen.append(self.stop(obj, workload, freezing))
        return [record for record in frozen if record is not None]

    def stop(self, obj: dict, workload: Workload, freezing: Freezing) -> FrozenOwner | None:
        """Stop the owner itself; its record (None: stopped already by someone else)."""
        return self._suspend(self.owner, obj, freezing)

    def sources(self, obj: dict) -> list[tuple[list[str], str]]:
        """The GitRepositories the owner's desired state comes from ([namespace, name]),
        each with the path read there."""
        raise NotImplementedError

    def applied(self, obj: dict, source: list[str] | None) -> str:
        """The source revision that deployed what runs now."""
        return self._artifact(source)

    # -- suspend ----------------------------------------------------------------------------

    def _suspend(self, ref: Ref, obj: dict, freezing: Freezing, **stash) -> FrozenOwner | None:
        """`spec.suspend: true`, marked as this rollback's; None when someone else had
        suspended it (it re-applies nothing then, and is not Backstop's to resume)."""
        held = self._held(obj)
        if held is not None:
            return held
        rollback_id = freezing.rollback.id

        def suspend(live: dict) -> dict | None:
            if live["spec"].get("suspend"):
                return None
            return {
                "metadata": {"annotations": {FROZEN_BY: rollback_id}},
                "spec": {"suspend": True},
            }

        patched = self.update(ref, obj, suspend)
        if (
            patched is None
            and annotations(self.get(ref, *_where(obj))).get(FROZEN_BY) != rollback_id
        ):
            return None
        return self._record(obj, "suspended", freezing, **stash)

    def _held(self, obj: dict) -> FrozenOwner | None:
        """An active freeze of this object already recorded (a re-run, an earlier rollback)."""
        held = self.situation.store.freezes.get(_key(obj))
        return held if held is not None and held.active else None

    def _record(self, obj: dict, how: str, freezing: Freezing, **stash) -> FrozenOwner:
        return self.situation.frozen(
            api_version=obj["apiVersion"],
            kind=obj["kind"],
            namespace=obj["metadata"]["namespace"],
            name=obj["metadata"]["name"],
            how=how,
            claim=freezing.claim,
            rollback=freezing.rollback,
            stash={"owner": freezing.owner, "source": freezing.source, **stash},
            source=freezing.revision,
        )

    # -- image automation -------------------------------------------------------------------

    def _automations(self, sources: list[tuple[list[str], str]]) -> list[dict]:
        """The ImageUpdateAutomations that commit to one of `sources` under an overlapping
        path, not suspended already."""
        if not sources:
            return []
        try:
            candidates = self.situation.objects.all(IMAGE_UPDATE)
        except NotFound:
            return []  # the image automation API is not installed
        found = []
        for automation in candidates:
            spec = automation.get("spec") or {}
            ref = spec.get("sourceRef") or {}
            where = [ref.get("namespace") or automation["metadata"]["namespace"], ref.get("name")]
            path = (spec.get("update") or {}).get("path", "")
            if spec.get("suspend") and annotations(automation).get(FROZEN_BY) is None:
                continue  # suspended by someone else: it commits nothing
            if ref.get("kind", "GitRepository") != "GitRepository":
                continue
            if any(where == source and overlaps(path, read) for source, read in sources):
                found.append(automation)
        return found

    # -- after ------------------------------------------------------------------------------

    def moved_past(self, freeze: FrozenOwner) -> str:
        now = self._artifact(freeze.stash.get("source"))
        if now and freeze.source and now != freeze.source:
            return f"Git moved from {short(freeze.source)} to {short(now)}"
        return ""

    def thaw(self, freeze: FrozenOwner) -> None:
        try:
            if freeze.kind in WORKLOAD_KINDS:
                self.situation.kube.patch(
                    freeze.kind,
                    freeze.namespace,
                    freeze.name,
                    {"metadata": {"annotations": {FLUX_RECONCILE: None, FROZEN_BY: None}}},
                    patch_type="merge",
                )
            else:
                ref = _refs()[freeze.kind]
                obj = self.get(ref, freeze.namespace, freeze.name)
                marks = {FROZEN_BY: None, REQUESTED_AT: self.situation.clock().isoformat()}
                self.merge(
                    ref, obj, {"metadata": {"annotations": marks}, "spec": {"suspend": None}}
                )
        except NotFound:
            return  # gone: nothing left to resume
        self._request_reconcile(freeze.stash.get("owner"))

    def _request_reconcile(self, owner: list[str] | None) -> None:
        """Ask the owner to reconcile now, as `flux reconcile` does, so the source that
        moved on is applied without waiting for `spec.interval`."""
        if not owner or owner[0] not in _refs():
            return
        ref = _refs()[owner[0]]
        try:
            obj = self.get(ref, owner[1], owner[2])
        except NotFound:
            return
        marks = {"metadata": {"annotations": {REQUESTED_AT: self.situation.clock().isoformat()}}}
        self.merge(ref, obj, marks)

    def _artifact(self, source: list[str] | None) -> str:
        """A GitRepository's artifact revision (`<branch>@sha1:<sha>`), "" when unknown."""
        if not source:
            return ""
        try:
            repo = self.get(GIT_REPOSITORY, source[0], source[1])
        except NotFound:
            return ""
        return ((repo.get("status") or {}).get("artifact") or {}).get("revision", "")


class KustomizationHand(FluxHand):
    """Flux Kustomizations: the workload's `reconcile: disabled`, or the whole suspended."""

    owner = KUSTOMIZATION
    thaws = ("Kustomization", "ImageUpdateAutomation", *WORKLOAD_KINDS)

    def holds(self, obj: dict, workload: Workload) -> bool:
        """Its inventory lists the workload (a Kustomization not yet inventoried holds what
        its labels say)."""
        entries = ((obj.get("status") or {}).get("inventory") or {}).get("entries")
        if not entries:
            return True
        group = "argoproj.io" if workload.kind == "Rollout" else "apps"
        wanted = f"{workload.namespace}_{workload.name}_{group}_{workload.kind}"
        return any(entry.get("id") == wanted for entry in entries)

    def sources(self, obj: dict) -> list[tuple[list[str], str]]:
        ref = obj["spec"].get("sourceRef") or {}
        if ref.get("kind") != "GitRepository":
            return []  # OCI and bucket sources: no image automation writes them
        return [([ref.get("namespace") or obj["metadata"]["namespace"], ref["name"]], _path(obj))]

    def applied(self, obj: dict, source: list[str] | None) -> str:
        return (obj.get("status") or {}).get("lastAppliedRevision") or self._artifact(source)

    def stop(self, obj: dict, workload: Workload, freezing: Freezing) -> FrozenOwner | None:
        if self.situation.policy.kustomization.suspend == "kustomization":
            return self._suspend(self.owner, obj, freezing)
        return self._disable(workload, freezing)

    def _disable(self, workload: Workload, freezing: Freezing) -> FrozenOwner | None:
        """Annotate the workload alone `reconcile: disabled`."""
        kube = self.situation.kube
        live = kube.get(workload.kind, workload.namespace, workload.name)
        held = self._held(live)
        if held is not None:
            return held
        rollback_id = freezing.rollback.id
        marks = {**(live["metadata"].get("labels") or {}), **annotations(live)}
        if marks.get(FLUX_RECONCILE) == "disabled" and marks.get(FROZEN_BY) != rollback_id:
            return None  # someone excluded it from Flux already
        body = {"metadata": {"annotations": {FLUX_RECONCILE: "disabled", FROZEN_BY: rollback_id}}}
        kube.patch(workload.kind, workload.namespace, workload.name, body, patch_type="merge")
        return self._record(live, "reconcile disabled on the workload", freezing)


class HelmReleaseHand(FluxHand):
    """Flux HelmReleases: suspended; the freeze also ends when their spec changes."""

    owner = HELM_RELEASE
    thaws = ("HelmRelease",)

    def sources(self, obj: dict) -> list[tuple[list[str], str]]:
        """The chart's GitRepository, and the Git of the Kustomization that applies the
        HelmRelease itself (where an automation would write its values)."""
        found = []
        chart = (obj["spec"].get("chart") or {}).get("spec") or {}
        ref = chart.get("sourceRef") or {}
        if ref.get("kind") == "GitRepository":
            where = [ref.get("namespace") or obj["metadata"]["namespace"], ref["name"]]
            found.append((where, chart.get("chart", "")))
        labels = obj["metadata"].get("labels") or {}
        name = labels.get(KUSTOMIZATION_LABELS[0])
        if name:
            namespace = labels.get(KUSTOMIZATION_LABELS[1]) or obj["metadata"]["namespace"]
            try:
                parent = self.get(KUSTOMIZATION, namespace, name)
            except NotFound:
                return found
            found.extend(KustomizationHand(self.situation).sources(parent))
        return found

    def stop(self, obj: dict, workload: Workload, freezing: Freezing) -> FrozenOwner | None:
        # Its spec as it was: new values or a new chart version also end the freeze.
        return self._suspend(self.owner, obj, freezing, spec=spec_digest(obj))

    def moved_past(self, freeze: FrozenOwner) -> str:
        moved = super().moved_past(freeze)
        if moved or "spec" not in freeze.stash:
            return moved
        try:
            obj = self.get(HELM_RELEASE, freeze.namespace, freeze.name)
        except NotFound:
            return f"HelmRelease {freeze.namespace}/{freeze.name} no longer exists"
        if spec_digest(obj) != freeze.stash["spec"]:
            return f"HelmRelease {freeze.namespace}/{freeze.name} has new values or chart"
        return ""


def spec_digest(obj: dict) -> str:
    """What a HelmRelease asks for, without Backstop's own `suspend`."""
    spec = {k: v for k, v in obj["spec"].items() if k != "suspend"}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def overlaps(one: str, other: str) -> bool:
    """Do two repository paths overlap (one is the other or inside it)? "" is the root."""
    a, b = _norm(one), _norm(other)
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def short(revision: str) -> str:
    """`main@sha1:0123456789abcdef…` as `main@sha1:0123456789ab`."""
    head, _, sha = revision.rpartition(":")
    return f"{head}:{sha[:12]}" if head else revision[:12]


def annotations(obj: dict) -> dict:
    return obj["metadata"].get("annotations") or {}


def describe(obj: dict) -> str:
    return f"{obj['kind']} {obj['metadata']['namespace']}/{obj['metadata']['name']}"


def _norm(path: str) -> str:
    return path.strip().removeprefix("./").strip("/")


def _path(obj: dict) -> str:
    return obj["spec"].get("path", "")


def _where(obj: dict) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _key(obj: dict) -> str:
    meta = obj["metadata"]
    return FrozenOwner.key(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])


def _refs() -> dict[str, Ref]:
    return {ref.kind: ref for ref in (KUSTOMIZATION, HELM_RELEASE, IMAGE_UPDATE)}
