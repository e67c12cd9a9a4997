"""HTTP test doubles for Jira and PagerDuty: real loopback servers the real clients talk to."""
