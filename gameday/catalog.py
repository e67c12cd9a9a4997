"""Every game-day scenario, in the order they run: those of plays.py, those judged by
revision (judged.py), the Argo CD one (gitops.py), the quarantine's admission webhook
(quarantined.py), the dry-run one last (it restarts Backstop in dry-run mode)."""

from gameday import gitops, judged, plays, quarantined

SCENARIOS = sorted(
    [*plays.SCENARIOS, *judged.SCENARIOS, gitops.SCENARIO, quarantined.SCENARIO],
    key=lambda s: s.mode != "enforce",
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
