"""The `chat:` block of the policy: where Slack and Microsoft Teams hear about rollbacks.

Named targets (a Slack incoming webhook, a Slack bot token with a channel, or a Teams
Workflows webhook), each with the events it wants; `routes` names the targets of every
service that has no `chat:` of its own (a service's `chat:` replaces it). Secrets (webhook
URLs are secrets too) are never written here: a target names the environment variable or
the file that holds each one, read when a message is sent (docs/chat.md).
"""

import os
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

ChatEvent = Literal[
    "started",
    "verified",
    "verification_failed",
    "blocked",
    "failed",
    "awaiting_approval",
    "denied",
    "quarantine_released",
]
CHAT_EVENTS: tuple[str, ...] = get_args(ChatEvent)

TargetName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
# A secret file holds one value; more is not a secret file.
MAX_SECRET_BYTES = 8192


class SecretUnavailable(Exception):
    """A secret's variable is unset or empty, or its file cannot be read. The message names
    the variable or the file, never a value."""


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Block):
    """Where a secret is: `{env: NAME}` or `{file: /path}`, exactly one."""

    env: EnvName | None = Field(None, description="an environment variable holding it")
    file: str | None = Field(None, min_length=1, description="a file holding it (one line)")

    @model_validator(mode="before")
    @classmethod
    def _not_the_secret_itself(cls, data: object) -> object:
        if isinstance(data, str):
            # Never echoed: it may be the very URL or token the policy must not hold.
            raise ValueError(
                "give where the secret is, {env: VARIABLE} or {file: /path}, "
                "never the secret itself"
            )
        return data

    @model_validator(mode="after")
    def _one_place(self) -> "SecretRef":
        if (self.env is None) == (self.file is None):
            raise ValueError("name exactly one of env or file")
        return self

    def where(self) -> str:
        """The variable or file, as messages name it."""
        return f"${self.env}" if self.env else f"file {self.file}"

    def read(self) -> SecretStr:
        """The secret, read now (a rotated file is picked up by the next message)."""
        if self.env is not None:
            value = os.environ.get(self.env, "").strip()
        else:
            try:
                with Path(self.file or "").open("rb") as handle:
                    raw = handle.read(MAX_SECRET_BYTES + 1)
            except OSError as exc:
                raise SecretUnavailable(f"{self.where()} cannot be read: {exc.strerror}") from None
            if len(raw) > MAX_SECRET_BYTES:
                raise SecretUnavailable(f"{self.where()} is larger than a secret")
            value = raw.decode("utf-8", "replace").strip()
        if not value:
            raise SecretUnavailable(f"{self.where()} is unset or empty")
        return SecretStr(value)


class ChatTarget(_Block):
    """One place messages go: Slack (incoming webhook, or bot token + channel) or Teams
    (a Workflows webhook that posts an Adaptive Card)."""

    kind: Literal["slack", "teams"]
    webhook: SecretRef | None = Field(
        None, description="the incoming webhook's URL (Slack) or the Workflows trigger URL (Teams)"
    )
    token: SecretRef | None = Field(
        None, description="Slack only: a bot token (xoxb-...), for one message per rollback"
    )
    channel: str | None = Field(
        None, min_length=1, max_length=80, description="Slack bot only: the channel ID (C0...)"
    )
    events: list[ChatEvent] = Field(
        default_factory=lambda: list(get_args(ChatEvent)),
        min_length=1,
        description="what it hears of",
    )
    api_url: str = Field(
        "https://slack.com/api",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Slack bot only: the Web API's base URL (a proxy in front of it)",
    )

    @model_validator(mode="after")
    def _complete(self) -> "ChatTarget":
        if self.kind == "teams":
            if self.webhook is None or self.token is not None or self.channel is not None:
                raise ValueError("a teams target takes a webhook only")
        elif (self.webhook is None) == (self.token is None):
            raise ValueError("a slack target takes either a webhook or a token with a channel")
        elif self.token is not None and self.channel is None:
            raise ValueError("a slack token needs the channel to post in")
        elif self.webhook is not None and self.channel is not None:
            raise ValueError("a slack webhook posts to its own channel: leave channel out")
        return self

    @property
    def bot(self) -> bool:
        """A Slack bot: posts once per rollback, then updates that message."""
        return self.token is not None


class ChatPolicy(_Block):
    """The chat targets, and which of them a service's rollbacks go to by default."""

    targets: dict[TargetName, ChatTarget] = Field(default_factory=dict)
    routes: list[TargetName] | None = Field(
        None,
        description="targets of services without their own `chat` (and of alerts matching "
        "no service); unset: every target",
    )

    @model_validator(mode="after")
    def _routes_known(self) -> "ChatPolicy":
        unknown = sorted(set(self.routes or ()) - set(self.targets))
        if unknown:
            raise ValueError(f"routes names no target called {', '.join(unknown)}")
        return self

    def route(self, service_targets: list[str] | None, event: str) -> list[str]:
        """The targets told about `event` for a service (its own `chat`, else `routes`)."""
        names = service_targets if service_targets is not None else self.routes
        if names is None:
            names = list(self.targets)
        return [n for n in dict.fromkeys(names) if n in self.targets and self.wanted(n, event)]

    def wanted(self, name: str, event: str) -> bool:
        """Does target `name` hear of `event`?"""
        return event in self.targets[name].events

    def wants(self, event: str) -> bool:
        """Does any target hear of `event`? (Nothing is enqueued when none does.)"""
        return any(event in target.events for target in self.targets.values())
