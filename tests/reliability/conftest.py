"""Shared setup of the reliability tests (docs/reliability.md, R1-R6)."""

import os

import pytest
from hypothesis import HealthCheck, settings

# -- R5 fuzzing: hypothesis profiles, chosen by BACKSTOP_FUZZ_PROFILE ------------------------
# "ci" (the default, what `make test` runs): a fixed seed and about 200 cases per fuzz test,
# about 2,000 in all. "full" (`make fuzz`): about 1,100 per fuzz test, over 10,000 in all.
# No deadline: timing belongs in bench/, and the machine may be busy.
_FUZZ_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
}
settings.register_profile("ci", max_examples=200, derandomize=True, **_FUZZ_COMMON)
settings.register_profile("full", max_examples=1_100, **_FUZZ_COMMON)
FUZZ_PROFILE = os.environ.get("BACKSTOP_FUZZ_PROFILE", "ci")
settings.load_profile(FUZZ_PROFILE)

_FUZZ_CASES = pytest.StashKey[dict[str, int]]()


@pytest.fixture
def fuzz_case(request):
    """Call once per generated case: `make fuzz` reports how many cases really ran."""
    counts = request.config.stash.setdefault(_FUZZ_CASES, {})
    name = request.node.name
    counts.setdefault(name, 0)

    def count() -> None:
        counts[name] += 1

    return count


def pytest_terminal_summary(terminalreporter, config) -> None:
    counts = config.stash.get(_FUZZ_CASES, {})
    if counts:
        terminalreporter.write_line(
            f"fuzz ({FUZZ_PROFILE} profile): {sum(counts.values())} cases in "
            f"{len(counts)} tests: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        )


# -- R2, R4: real `backstop worker` processes --------------------------------------------------


@pytest.fixture
def backstop_worker(kube, redis_url, tmp_path):
    """Start `backstop worker` processes (RQ worker with scheduler) on the test Redis and
    cluster, with a policy and extra environment; each is stopped by pid afterwards."""
    import signal
    import subprocess
    import sys

    from testbed.processes import launch

    started = []

    def start(policy: str, **env) -> subprocess.Popen:
        config = tmp_path / f"worker-policy-{len(started)}.yaml"
        config.write_text(policy)
        full = {
            **os.environ,
            "REDIS_URL": redis_url,
            "BACKSTOP_CONFIG": str(config),
            "KUBECONFIG": str(kube.kubeconfig),
            **env,
        }
        args = [sys.executable, "-m", "cli.main", "worker"]
        process = launch(args, tmp_path / f"worker-{len(started)}.log", env=full)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def incident_env(jira, pagerduty) -> dict[str, str]:
    """The worker environment that files incidents with the Jira and PagerDuty doubles."""
    return {
        "JIRA_URL": jira.url,
        "JIRA_USER": jira.email,
        "JIRA_TOKEN": jira.api_token,
        "PAGERDUTY_ROUTING_KEY": pagerduty.routing_key,
        "PAGERDUTY_EVENTS_URL": pagerduty.url,
        "PAGERDUTY_CA_FILE": str(pagerduty.ca_path),
    }
