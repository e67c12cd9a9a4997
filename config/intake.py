"""The `intake:` block of the policy: how much alert history Redis keeps.

Every cap here bounds the store's memory under any input (docs/benchmarks.md, P7: about
4 KB per alert episode, its stream event and its decision).
"""

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from config.durations import Duration


class IntakePolicy(BaseModel):
    """How long and how much alert history Redis keeps; bounds memory under any input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_ttl: Duration = Field(
        timedelta(days=7), description="dedup record lifetime after an episode's last notification"
    )
    max_episodes: int = Field(100_000, ge=100, description="episodes kept; oldest evicted first")
    events_max_len: int = Field(100_000, ge=100, description="events kept in the stream")
    events_max_age: Duration = Field(timedelta(days=7), description="events older are trimmed")
