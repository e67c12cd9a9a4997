"""The policy file: schema, loader, and errors that name the file and the field.

The schema is strict (`extra="forbid"`): a typo in a policy file is an error, not a
silently ignored key. It grows by blocks: top-level switches, `intake`, and later
`defaults` plus per-service entries.
"""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.durations import Duration


class StrictModel(BaseModel):
    """Base for our own configuration: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class IntakePolicy(StrictModel):
    """How long and how much alert history Redis keeps; bounds memory under any input."""

    episode_ttl: Duration = Field(
        timedelta(days=7), description="dedup record lifetime after an episode's last notification"
    )
    max_episodes: int = Field(100_000, ge=100, description="episodes kept; oldest evicted first")
    events_max_len: int = Field(100_000, ge=100, description="events kept in the stream")
    events_max_age: Duration = Field(timedelta(days=7), description="events older are trimmed")


class Policy(StrictModel):
    """The whole policy file."""

    mode: Literal["dry-run", "enforce", "approve"] = "dry-run"
    intake: IntakePolicy = IntakePolicy()


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file, located by its field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PolicyError(Exception):
    """The policy file could not be read or is invalid."""

    def __init__(self, file: Path, problems: list[PolicyProblem]):
        self.file = file
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{file}: invalid policy\n{lines}")


def field_path(location: tuple) -> str:
    """Render a pydantic error location as a dotted path, e.g. `alerts.0.status`."""
    return ".".join(str(part) for part in location)


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; raise PolicyError naming the file and each field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(path, [PolicyProblem("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(path, [PolicyProblem("", f"not valid YAML: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(path, [PolicyProblem("", "the top level must be a mapping")])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [PolicyProblem(field_path(err["loc"]), err["msg"]) for err in exc.errors()]
        raise PolicyError(path, problems) from None
