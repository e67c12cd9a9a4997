"""A service's `judgment:` block: is the new revision really worse than the one before it?

Before a rollback is enforced, Backstop can compare the bad revision's pods with the
previous revision's on a few KPIs (a Mann-Whitney U test with an allowed effect, see
core/judgment.py and docs/decisions.md). Each KPI is a PromQL template in which `$hash`
stands for a revision's pod hash (the `pod-template-hash` of a Deployment's pods, the
`controller-revision-hash` of a StatefulSet's or DaemonSet's, the
`rollouts-pod-template-hash` of an Argo Rollout's), so one query selects either revision's
pods; `$namespace` and `$name` stand for the workload's. What the verdict does is `mode`:
`require` acts on it, `advise` records it and rolls back anyway, `off` does not judge.
"""

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.durations import Duration

HASH = "$hash"
MAX_KPIS = 3


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JudgmentKPI(_Block):
    """One KPI judged per revision: a PromQL template, the bad direction, the allowed effect."""

    name: str = Field(min_length=1, max_length=100)
    query: str = Field(
        min_length=1,
        max_length=4000,
        description="PromQL; `$hash` is the revision's pod hash, `$namespace` and `$name` "
        "the workload's; every point of every series returned is one observation",
    )
    bad: Literal["higher", "lower"] = Field(
        "higher", description="which direction is worse (errors, latency: higher)"
    )
    relative: float | None = Field(
        0.10, ge=0, description="allowed worsening, relative to the old revision's median"
    )
    absolute: float | None = Field(
        None, ge=0, description="allowed worsening, in the KPI's own unit"
    )
    min_samples: int = Field(
        10, ge=3, le=10_000, description="fewer points on either side: no data"
    )

    @field_validator("query")
    @classmethod
    def _names_the_revision(cls, value: str) -> str:
        if HASH not in value:
            raise ValueError(f"the query must select a revision's pods with {HASH}")
        return value


class JudgmentPolicy(_Block):
    """How a service's rollbacks are judged before they are enforced."""

    mode: Literal["off", "advise", "require"] = Field(
        "require",
        description="require: confirmed rolls back, not_confirmed skips (paged), "
        "inconclusive waits for approval; advise: record only; off: do not judge",
    )
    confidence: float = Field(0.98, gt=0.5, lt=1, description="of the one-sided test")
    window: Duration = Field(
        timedelta(minutes=10), description="how much of each revision's data to compare"
    )
    step: Duration = Field(timedelta(seconds=15), description="resolution of the samples")
    kpis: list[JudgmentKPI] = Field(default_factory=list, max_length=MAX_KPIS)

    @model_validator(mode="after")
    def _sane_window(self) -> "JudgmentPolicy":
        if self.step <= timedelta(0) or self.window < self.step * 3:
            raise ValueError("window must hold at least three steps, and step be positive")
        if self.window / self.step > 10_000:
            raise ValueError("window / step gives more than 10,000 points per KPI")
        return self

    @property
    def active(self) -> bool:
        """Does this policy judge anything?"""
        return self.mode != "off" and bool(self.kpis)
