"""Pytest fixtures: a Jira Cloud double, a Jira Server double and a PagerDuty double per test."""

import pytest

from testbed.doubles.jira import JiraDouble
from testbed.doubles.pagerduty import PagerDutyDouble


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
