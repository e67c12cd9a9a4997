"""The game days as CI tests: one real stack, every scenario against it (`make gameday`
runs the same through `backstop gameday`).

The stack shares the session's Kubernetes control plane (as a game day against an existing
cluster would, `--kubeconfig`); everything else is its own: Redis, the demo service,
Prometheus with the kill-switch rules, Alertmanager, Backstop's receiver, worker and
watcher, and the Jira and PagerDuty doubles.
"""

import uuid

import pytest

from gameday import report
from gameday.catalog import SCENARIOS
from gameday.scenarios import Run, play, prepare, services
from gameday.stack import Stack, Targets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def gameday(kube, tmp_path_factory):
    """The stack, up, with every scenario's workloads deployed and known good."""
    namespace = f"gameday-{uuid.uuid4().hex[:8]}"
    with Stack(
        tmp_path_factory.mktemp("gameday"),
        services(SCENARIOS),
        namespace=namespace,
        targets=Targets(kubeconfig=kube.kubeconfig),
    ) as stack:
        run = Run(stack)
        prepare(run, SCENARIOS)
        yield run


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(gameday, scenario):
    entry = play(gameday, scenario).to_json()
    print(report.render(entry))
    assert entry["verdict"] == "pass", report.render(entry)
