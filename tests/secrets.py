"""Every secret value the tests hand to Backstop or its doubles, in one place.

Fixtures import their credentials from here, and the session's log scan (tests/logscan.py)
fails the run when any of them shows up in a log: Backstop must never log a credential.
"""

import base64
import inspect

from testbed.doubles.jira import CLOUD_API_TOKEN, CLOUD_EMAIL, SERVER_PAT
from testbed.doubles.pagerduty import PagerDutyDouble
from testbed.doubles.slack import BOT_TOKEN as SLACK_BOT_TOKEN
from testbed.doubles.slack import WEBHOOK_SECRET as SLACK_WEBHOOK_SECRET
from testbed.doubles.teams import SIGNATURE as TEAMS_SIGNATURE

WEBHOOK_USER = "backstop"  # Settings.webhook_user's default: Alertmanager's basic-auth name
WEBHOOK_TOKEN = "test-webhook-token"
API_TOKEN = "test-api-token"
GATE_TOKEN = "test-gate-token"
GRAFANA_HMAC_SECRET = "test-grafana-hmac-secret"

# Dashboard users of the browser tests and of the dashboard's HTTP tests.
OPERATOR_PASSWORD = "operator-password-1"
VIEWER_PASSWORD = "viewer-password-1"
DASHBOARD_PASSWORDS = {"alice": "alice-operator-pw", "victor": "victor-viewer-pw"}

# The doubles' own credentials (Jira Cloud API token, Jira Server PAT, PagerDuty routing key,
# Slack webhook secret and bot token, Teams trigger signature).
PAGERDUTY_ROUTING_KEY = inspect.signature(PagerDutyDouble).parameters["routing_key"].default


def _basic(user: str, password: str) -> str:
    """How a basic-auth header carries `user:password` (a log of the header leaks it too)."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# (name, value): the log scan reports the name, never the value.
SECRETS: tuple[tuple[str, str], ...] = (
    ("WEBHOOK_TOKEN", WEBHOOK_TOKEN),
    ("WEBHOOK_TOKEN as basic auth", _basic(WEBHOOK_USER, WEBHOOK_TOKEN)),
    ("API_TOKEN", API_TOKEN),
    ("GATE_TOKEN", GATE_TOKEN),
    ("GATE_TOKEN as basic auth", _basic(WEBHOOK_USER, GATE_TOKEN)),
    ("GRAFANA_HMAC_SECRET", GRAFANA_HMAC_SECRET),
    ("OPERATOR_PASSWORD", OPERATOR_PASSWORD),
    ("VIEWER_PASSWORD", VIEWER_PASSWORD),
    *((f"DASHBOARD_PASSWORDS[{name}]", value) for name, value in DASHBOARD_PASSWORDS.items()),
    ("Jira Cloud API token", CLOUD_API_TOKEN),
    ("Jira Cloud API token as basic auth", _basic(CLOUD_EMAIL, CLOUD_API_TOKEN)),
    ("Jira Server PAT", SERVER_PAT),
    ("PagerDuty routing key", PAGERDUTY_ROUTING_KEY),
    ("Slack webhook URL's secret", SLACK_WEBHOOK_SECRET),
    ("Slack bot token", SLACK_BOT_TOKEN),
    ("Teams webhook's signature", TEAMS_SIGNATURE),
)
