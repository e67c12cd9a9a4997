"""Typed settings read once from the environment at start.

Every variable is documented in the configuration reference (docs/configuration.md). Secrets are
`SecretStr`, so they never appear in reprs, logs or error messages.
"""

import hashlib
import hmac
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CONFIG_PATH = Path("config/backstop.yaml")


def _env(name: str):
    """Bind a field to exactly one environment variable."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """Process settings: where things are, credentials, limits."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    config_path: Path = Field(DEFAULT_CONFIG_PATH, validation_alias=_env("BACKSTOP_CONFIG"))
    bind: str = Field("127.0.0.1:8080", validation_alias=_env("BACKSTOP_BIND"))
    insecure: bool = Field(False, validation_alias=_env("BACKSTOP_INSECURE"))

    webhook_token: SecretStr | None = Field(None, validation_alias=_env("BACKSTOP_WEBHOOK_TOKEN"))
    webhook_user: str = Field("backstop", validation_alias=_env("BACKSTOP_WEBHOOK_USER"))
    api_token: SecretStr | None = Field(None, validation_alias=_env("BACKSTOP_API_TOKEN"))
    gate_token: SecretStr | None = Field(None, validation_alias=_env("BACKSTOP_GATE_TOKEN"))
    # The validating admission webhook (receiver/admission.py): off unless asked for.
    admission: bool = Field(False, validation_alias=_env("BACKSTOP_ADMISSION"))
    admission_token: SecretStr | None = Field(
        None, validation_alias=_env("BACKSTOP_ADMISSION_TOKEN")
    )
    grafana_hmac_secret: SecretStr | None = Field(
        None, validation_alias=_env("BACKSTOP_GRAFANA_HMAC_SECRET")
    )
    grafana_signature_header: str = Field(
        "X-Grafana-Alerting-Signature", validation_alias=_env("BACKSTOP_GRAFANA_SIGNATURE_HEADER")
    )
    grafana_timestamp_header: str = Field(
        "X-Grafana-Alerting-Signature-Timestamp",
        validation_alias=_env("BACKSTOP_GRAFANA_TIMESTAMP_HEADER"),
    )
    grafana_max_skew_seconds: int = Field(
        300, ge=1, validation_alias=_env("BACKSTOP_GRAFANA_MAX_SKEW")
    )

    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, validation_alias=_env("BACKSTOP_MAX_BODY_BYTES")
    )
    # What one webhook may bring in (docs/api.md): Alertmanager sends one group
    # per webhook, usually a handful of alerts; 1,000 is generous. Senders stay under it
    # with Alertmanager's `max_alerts` / Grafana's `maxAlerts`.
    max_alerts_per_webhook: int = Field(
        1000, ge=1, validation_alias=_env("BACKSTOP_MAX_ALERTS_PER_WEBHOOK")
    )
    # Labels, annotations, links and values of one alert, in UTF-8 bytes: what bounds the
    # store in bytes (its records are bounded in count).
    max_alert_bytes: int = Field(
        8192, ge=1024, le=1024 * 1024, validation_alias=_env("BACKSTOP_MAX_ALERT_BYTES")
    )
    max_alert_labels: int = Field(
        64, ge=8, le=1000, validation_alias=_env("BACKSTOP_MAX_ALERT_LABELS")
    )
    redis_timeout_seconds: float = Field(
        2.0, gt=0, le=2.0, validation_alias=_env("BACKSTOP_REDIS_TIMEOUT")
    )
    # Durability across a failover: a webhook is answered 202 only once this many replicas
    # acknowledged its writes (Redis WAIT, up to the timeout below), else 503. 0: no wait.
    redis_min_replicas: int = Field(0, ge=0, validation_alias=_env("BACKSTOP_REDIS_MIN_REPLICAS"))
    redis_replica_timeout_seconds: float = Field(
        0.5, gt=0, le=2.0, validation_alias=_env("BACKSTOP_REDIS_REPLICA_TIMEOUT")
    )
    log_level: str = Field("INFO", validation_alias=_env("BACKSTOP_LOG_LEVEL"))
    # JSON lines for log collectors; `backstop run` picks text when it runs on a terminal.
    log_format: Literal["json", "text"] = Field(
        "json", validation_alias=_env("BACKSTOP_LOG_FORMAT")
    )
    prometheus_url: str | None = Field(None, validation_alias=_env("PROMETHEUS_URL"))
    public_url: str | None = Field(None, validation_alias=_env("BACKSTOP_PUBLIC_URL"))
    snapshot_secret: SecretStr | None = Field(
        None, validation_alias=_env("BACKSTOP_SNAPSHOT_SECRET")
    )
    jira_url: str | None = Field(None, validation_alias=_env("JIRA_URL"))
    jira_user: str | None = Field(None, validation_alias=_env("JIRA_USER"))
    jira_token: SecretStr | None = Field(None, validation_alias=_env("JIRA_TOKEN"))
    jira_pat: SecretStr | None = Field(None, validation_alias=_env("JIRA_PAT"))
    pagerduty_routing_key: SecretStr | None = Field(
        None, validation_alias=_env("PAGERDUTY_ROUTING_KEY")
    )
    pagerduty_url: str | None = Field(None, validation_alias=_env("PAGERDUTY_EVENTS_URL"))
    pagerduty_ca_file: str | None = Field(None, validation_alias=_env("PAGERDUTY_CA_FILE"))
    kubeconfig: str | None = Field(None, validation_alias=_env("KUBECONFIG"))
    kube_context: str | None = Field(None, validation_alias=_env("BACKSTOP_KUBE_CONTEXT"))

    leader_election_namespace: str | None = Field(
        None, validation_alias=_env("BACKSTOP_LEADER_ELECTION_NAMESPACE")
    )
    leader_election_name: str = Field(
        "backstop-watcher", validation_alias=_env("BACKSTOP_LEADER_ELECTION_NAME")
    )
    users_file: Path | None = Field(None, validation_alias=_env("BACKSTOP_USERS_FILE"))
    session_hours: float = Field(
        12.0, gt=0, le=24 * 7, validation_alias=_env("BACKSTOP_SESSION_HOURS")
    )
    cookie_secure: bool | None = Field(None, validation_alias=_env("BACKSTOP_COOKIE_SECURE"))
    # Signs dashboard sessions stored in Redis; unset: derived from the API token.
    session_secret: SecretStr | None = Field(None, validation_alias=_env("BACKSTOP_SESSION_SECRET"))
    # Failed logins allowed in a window per client address and per name, then 429.
    login_max_failures_per_address: int = Field(
        30, ge=1, validation_alias=_env("BACKSTOP_LOGIN_MAX_FAILURES_PER_ADDRESS")
    )
    login_max_failures_per_name: int = Field(
        10, ge=1, validation_alias=_env("BACKSTOP_LOGIN_MAX_FAILURES_PER_NAME")
    )
    login_window_seconds: int = Field(
        900, ge=1, le=86400, validation_alias=_env("BACKSTOP_LOGIN_WINDOW_SECONDS")
    )

    @field_validator(
        "webhook_token",
        "api_token",
        "gate_token",
        "admission_token",
        "grafana_hmac_secret",
        "snapshot_secret",
        "jira_token",
        "jira_pat",
        "pagerduty_routing_key",
        "session_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value):
        """Treat an empty variable as unset, so `FOO=` does not become an empty password."""
        return None if value == "" else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @property
    def jira_configured(self) -> bool:
        """Jira needs a URL and either a user with an API token or a personal access token."""
        return bool(self.jira_url and (self.jira_pat or (self.jira_user and self.jira_token)))

    @property
    def secure_cookies(self) -> bool:
        """Mark cookies Secure when told to, or when Backstop is served over https."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return bool(self.public_url and self.public_url.startswith("https://"))

    def snapshot_key(self) -> bytes:
        """The key that signs snapshot links: its own secret, else derived from the API token."""
        if self.snapshot_secret is not None:
            return self.snapshot_secret.get_secret_value().encode()
        base = self.api_token.get_secret_value() if self.api_token else "insecure-local"
        return hashlib.sha256(b"backstop-snapshots:" + base.encode()).digest()

    @cached_property
    def session_key(self) -> bytes:
        """The key that signs stored sessions: its own secret, else derived from the API
        token (domain-separated HMAC, so it equals no other key made from the token), so
        every worker and replica agrees on it; rotating the token then ends every session.
        Computed once per process."""
        secret = self.session_secret or self.api_token or SecretStr("insecure-local")
        base = secret.get_secret_value().encode()
        return hmac.new(base, b"backstop-session-key-v1", hashlib.sha256).digest()

    @cached_property
    def token_stamp(self) -> str | None:
        """A fingerprint of the API token (keyed, so it reveals nothing of the token): a
        token login's session carries it and ends when the token changes."""
        if self.api_token is None:
            return None
        token = self.api_token.get_secret_value().encode()
        return hmac.new(self.session_key, b"token\x00" + token, hashlib.sha256).hexdigest()[:32]

    def missing_credentials(self) -> list[str]:
        """Name the credentials a secure start needs but that are not set."""
        missing = []
        if self.webhook_token is None:
            missing.append("BACKSTOP_WEBHOOK_TOKEN")
        if self.api_token is None:
            missing.append("BACKSTOP_API_TOKEN")
        return missing
