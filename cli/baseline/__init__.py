"""Baselines and thresholds (`backstop baseline`): the known-good history of a service's
kill-switch KPIs read from Prometheus, its distribution per segment and peak/off-peak,
thresholds with a buffer above the noise and their false-positive rate on that history,
alerting rules written from them, and a linter for existing rules.

Modules: spec (the YAML/flags model and PromQL of each KPI), stats (distributions), periods
(peak/off-peak), thresholds (proposal and false positives), history (Prometheus reads),
analysis (all of it per KPI), rules (rule files, PrometheusRule), promql (reading rule
expressions), rulecheck (the linter), report (table and JSON), command (the CLI).
"""
