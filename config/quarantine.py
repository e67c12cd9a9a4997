"""The `quarantine:` block of the policy: keeping a rolled-back revision out.

A rollback is a save, not a fix: once Backstop has reverted a revision (verified, or
verification_failed), the images that revision ran are quarantined until a human releases
them (with a reason, audited), the Jira issue filed for the rollback is done, or the
quarantine expires. The gates answer unhealthy for a
quarantined revision, and a pipeline's pre-deploy step can ask (docs/quarantine.md).
"""

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from config.durations import Duration


class QuarantinePolicy(BaseModel):
    """Whether rolled-back revisions are quarantined, and for how long at most."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="quarantine the revisions Backstop rolls back")
    ttl: Duration = Field(
        timedelta(days=14), description="a quarantine nobody released ends after this long"
    )
    release_when_done: bool = Field(
        True,
        description="end a quarantine once the Jira issue filed for its rollback is in a "
        "done status category",
    )
    review_interval: Duration = Field(
        timedelta(minutes=5), description="how often Jira and the expiries are checked"
    )
