"""The `owners:` block of the policy: how Backstop rolls back a workload another tool owns.

A workload that Argo CD, Flux or Helm reconciles is rolled back through that owner (see
docs/owners.md): its reconciler is frozen first, so the revert sticks, and the freeze is
lifted when the source moves past the bad revision, at its expiry, or by a human. An owner
kind switched off here makes its workloads' rollbacks `blocked: owner_not_frozen`, paged.
"""

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from config.durations import Duration


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArgoCDOwner(_Block):
    """Argo CD Applications: freeze auto-sync, then sync the previous history entry."""

    enabled: bool = True
    namespace: str = Field("argocd", min_length=1, description="where Applications live")
    freeze_parents: bool = Field(
        True,
        description="also freeze the ApplicationSet or parent Application that would "
        "re-enable a child's auto-sync; off: such children are blocked",
    )


class KustomizationOwner(_Block):
    """Flux Kustomizations: stop them re-applying the workload, then revert it."""

    enabled: bool = True
    suspend: Literal["workload", "kustomization"] = Field(
        "workload",
        description="workload: annotate only the workload `reconcile: disabled`; "
        "kustomization: suspend the whole Kustomization",
    )


class Switch(_Block):
    """An owner kind Backstop may act through."""

    enabled: bool = True


class HelmOwner(_Block):
    """Helm CLI releases: revert, and record the rollback in the release's own history."""

    enabled: bool = True
    record_release: bool = Field(
        True,
        description="write release N+1 as `helm rollback` does; off: blocked and paged",
    )


class OwnersPolicy(_Block):
    """Owner handling, per owner kind, and how long a freeze lasts."""

    argocd: ArgoCDOwner = ArgoCDOwner()
    kustomization: KustomizationOwner = KustomizationOwner()
    helmrelease: Switch = Switch()
    helm: HelmOwner = HelmOwner()
    image_automation: Switch = Field(
        Switch(), description="suspend Flux ImageUpdateAutomations that write the workload"
    )
    freeze_ttl: Duration = Field(
        timedelta(days=3), description="a freeze not lifted sooner is lifted then"
    )
    review_interval: Duration = Field(
        timedelta(seconds=30), description="how often a freeze is checked for its end"
    )

    def allows(self, kind: str) -> bool:
        """May Backstop act through an owner of this kind (core/owners.py's kinds)?"""
        block = getattr(self, kind, None)
        return bool(block is not None and block.enabled)
