"""Real parts, started and stopped by Backstop's own code: the Kubernetes control plane
(built from Debian's source package), Prometheus, Alertmanager, gunicorn, and HTTP doubles
of Jira and PagerDuty. The tests use them (docs/commands.md, "Quick start"), and so do game days
(`backstop gameday`)."""
