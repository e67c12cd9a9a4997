"""Every game-day scenario, in the order they run: those of plays.py, those judged by
revision (judged.py), the Argo CD one (gitops.py), the dry-run one last (it restarts
Backstop in dry-run mode)."""

from gameday import gitops, judged, plays

SCENARIOS = sorted(
    [*plays.SCENARIOS, *judged.SCENARIOS, gitops.SCENARIO], key=lambda s: s.mode != "enforce"
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
