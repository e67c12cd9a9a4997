"""Pytest fixtures: a Jira Cloud double, a Jira Server double, a PagerDuty double, a Slack
double and a Teams double per test."""

import pytest

from testbed.doubles.jira import JiraDouble
from testbed.doubles.pagerduty import PagerDutyDouble
from testbed.doubles.slack import SlackDouble
from testbed.doubles.teams import TeamsDouble


@pytest.fixture
def jira_server():
    """A Jira Cloud double (basic auth with e-mail and API token), stopped after the test."""
    with JiraDouble(mode="cloud") as double:
        yield double


@pytest.fixture
def jira_dc():
    """A Jira Server/Data Center double (Bearer personal access token), stopped after the test."""
    with JiraDouble(mode="server") as double:
        yield double


@pytest.fixture
def pagerduty_server():
    """A PagerDuty Events API v2 double over TLS, stopped after the test."""
    with PagerDutyDouble() as double:
        yield double


@pytest.fixture
def slack_server():
    """A Slack double (incoming webhook, chat.postMessage, chat.update), stopped after the test."""
    with SlackDouble() as double:
        yield double


@pytest.fixture
def teams_server():
    """A Teams Workflows webhook double, stopped after the test."""
    with TeamsDouble() as double:
        yield double
