"""Every game-day scenario, in the order they run: those in scenarios.py, then the ones
with their own module (gitops.py), the dry-run one last (it restarts Backstop in dry-run
mode)."""

from gameday import gitops, scenarios

SCENARIOS = sorted([*scenarios.SCENARIOS, gitops.SCENARIO], key=lambda s: s.mode != "enforce")
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
