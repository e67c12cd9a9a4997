"""`backstop judge` (cli/judge.py) against stand-ins of Backstop's own interfaces: a
Prometheus answering range queries per pod hash (tests/prometheus_standin.py) and a reader
of the workload's revisions. What it judges against what, over which time, what it prints,
and its exit codes, including every way it cannot judge (2, one line, no traceback)."""

import argparse
import json
from datetime import timedelta

import pytest
import yaml

from cli.judge import CannotJudge, _before, add_arguments, main, parse_workload, run, summary
from config.settings import Settings
from core.errors import TransientError
from core.integrations.kubernetes import NotFound
from core.models import Workload
from core.records import utcnow
from tests.prometheus_standin import Prometheus
from workers.preflight import Revisions

QUERY = 'sum(errors{namespace="$namespace",pod_template_hash="$hash"})'
KPI = {"name": "errors", "query": QUERY, "relative": 0.1, "min_samples": 8}
POLICY = {
    "mode": "enforce",
    "services": [
        {
            "name": "checkout",
            "match": {"deployment": "checkout"},
            "judgment": {"window": "5m", "step": "15s", "kpis": [KPI]},
        },
        {"name": "plain", "match": {"deployment": "plain"}},
    ],
}
NOW = utcnow()


def replica_set(revision: int, minutes_ago: float, pod_hash: str | None = None) -> dict:
    """A ReplicaSet of checkout as the cluster has it."""
    labels = {"app": "checkout"}
    if pod_hash != "":
        labels["pod-template-hash"] = pod_hash or f"h{revision}"
    created = NOW - timedelta(minutes=minutes_ago)
    return {
        "metadata": {
            "name": f"checkout-h{revision}",
            "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }


def revisions(*children: dict) -> Revisions:
    by_number = {
        c["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: c for c in children
    }
    return Revisions({"metadata": {"name": "checkout"}}, by_number, max(by_number, key=int))


# Revision 7 rolled out 20 minutes ago over 5; 3 is long gone.
HISTORY = revisions(replica_set(3, 300), replica_set(5, 120), replica_set(7, 20))


def reader(found: Revisions = HISTORY):
    asked: list[Workload] = []

    def read(workload: Workload) -> Revisions:
        asked.append(workload)
        return found

    read.asked = asked  # type: ignore[attr-defined]
    return read


def flat(value):
    return lambda t: value


@pytest.fixture
def args(tmp_path, monkeypatch):
    """Parse `backstop judge` options, with the test policy as --config."""
    for name in ("PROMETHEUS_URL", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def parse(*argv: str, workload="shop/Deployment/checkout", revision="7"):
        given = [f"--workload={workload}", f"--revision={revision}", f"--config={policy}"]
        return parser.parse_args([*given, *argv])

    parse.policy = policy  # type: ignore[attr-defined]
    return parse


def judged(args, prometheus, *argv, found=HISTORY, **options):
    return run(args(*argv, **options), Settings(), prometheus=prometheus, read=reader(found))


def test_a_workload_is_namespace_kind_name_with_an_optional_cluster():
    assert parse_workload("shop/Deployment/checkout", "local") == Workload(
        "local", "shop", "Deployment", "checkout"
    )
    assert parse_workload("eu/shop/Rollout/checkout", "local").cluster == "eu"
    for bad in ("checkout", "shop/Pod/checkout", "shop//checkout", "a/b/c/d/e"):
        with pytest.raises(CannotJudge):
            parse_workload(bad, "local")


def test_the_revision_compared_with_is_the_highest_existing_one_below():
    assert _before("7", [3, 5, 6, 7, 9]) == "6"
    assert _before("7", [3, 5, 7]) == "5"
    with pytest.raises(CannotJudge):
        _before("3", [3, 4])
    with pytest.raises(CannotJudge):
        _before("latest", [3, 4])


def test_a_worse_revision_is_confirmed_and_exits_1_with_a_table(args, capsys):
    prometheus = Prometheus({"h7": flat(0.03), "h5": flat(0.003)})
    assert main(args(), prometheus=prometheus, read=reader()) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "default/shop/Deployment/checkout: revision 7 against 5: confirmed "
        "(confidence 0.98, mode require)"
    )
    assert out[1].split() == [
        *("KPI", "VERDICT", "HOW", "N", "NEW/OLD", "MEDIAN", "NEW", "MEDIAN", "OLD"),
        *("P", "SHIFT", "ALLOWED"),
    ]
    row = out[2].split()
    assert row[:4] == ["errors", "confirmed", "side_by_side", "21/21"]
    assert float(row[4]) == pytest.approx(0.03, rel=0.1)
    assert float(row[5]) == pytest.approx(0.003, rel=0.1)
    assert float(row[6]) < 0.02 and float(row[8]) == pytest.approx(0.0003, rel=0.1)
    assert out[3].startswith("  errors: ")
    # Both revisions' pods, by their hashes, the workload's namespace filled in.
    asked = {expr for expr, _, _ in prometheus.asked}
    assert asked == {
        'sum(errors{namespace="shop",pod_template_hash="h7"})',
        'sum(errors{namespace="shop",pod_template_hash="h5"})',
    }


def test_a_revision_no_worse_exits_0_and_json_is_the_record(args, capsys):
    prometheus = Prometheus({"h7": flat(0.2), "h5": flat(0.2)})  # an outage hits both alike
    assert main(args("--json"), prometheus=prometheus, read=reader()) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["verdict"] == "not_confirmed"
    assert (record["workload"], record["revision"], record["against"]) == (
        "default/shop/Deployment/checkout",
        "7",
        "5",
    )
    (kpi,) = record["kpis"]
    assert kpi["how"] == "side_by_side" and kpi["series"]["new"] and kpi["n_old"] == 21


def test_too_little_data_is_no_verdict_and_not_a_failure(args, capsys):
    # The command judges up to its own now: the data start a minute before the test runs
    # (NOW is fixed when the module is imported, which may be long before in a full run).
    recent = utcnow() - timedelta(seconds=60)
    prometheus = Prometheus({"h7": lambda t: 0.03 if t >= recent else None, "h5": flat(0.003)})
    assert main(args(), prometheus=prometheus, read=reader()) == 0
    assert ": nodata (" in capsys.readouterr().out.splitlines()[0]


def test_against_and_the_overrides_are_used(args):
    prometheus = Prometheus({"h7": flat(0.03), "h3": flat(0.003)})
    record = judged(args, prometheus, "--against=3", "--window=2m", "--confidence=0.9")
    assert record["against"] == "3" and record["confidence"] == 0.9
    assert any('pod_template_hash="h3"' in expr for expr, _, _ in prometheus.asked)
    _, start, end = prometheus.asked[0]
    assert end - start == timedelta(minutes=2)


def test_an_earlier_revision_is_judged_over_its_own_time_as_the_live_one(args):
    prometheus = Prometheus({"h5": flat(0.03), "h3": flat(0.003)})
    record = judged(args, prometheus, revision="5")
    assert record["against"] == "3"
    _, start, end = prometheus.asked[0]
    # From 5's rollout (120 minutes ago) until 7 took over (20 minutes ago): the last 5m.
    taken_over = NOW - timedelta(minutes=20)
    assert abs(end - taken_over) < timedelta(seconds=1)
    assert end - start == timedelta(minutes=5)


def test_before_after_once_the_old_pods_are_gone(args):
    rolled_out = NOW - timedelta(minutes=20)
    prometheus = Prometheus({"h7": flat(0.03), "h5": lambda t: 0.003 if t < rolled_out else None})
    record = judged(args, prometheus)
    assert record["verdict"] == "confirmed"
    assert record["kpis"][0]["how"] == "before_after"
    assert "window before the rollout" in summary(record)


def test_the_table_is_safe_for_a_terminal():
    record = {
        "workload": "default/shop/Deployment/checkout",
        "revision": "7",
        "against": "6",
        "verdict": "nodata",
        "mode": "require",
        "confidence": 0.98,
        "kpis": [
            {"name": "5xx\x1b[31m", "verdict": "nodata", "reason": "gone\x07\nsoon"},
        ],
    }
    text = summary(record)
    assert "\x1b" not in text and "\x07" not in text
    assert text.splitlines()[2].split() == ["5xx?[31m", "nodata", "-", "0/0", *["-"] * 5]
    assert text.splitlines()[3] == "  5xx?[31m: gone??soon"


def one_line(capsys) -> str:
    """What a refusal printed: nothing on stdout, one line on stderr."""
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("judge: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def refused(args, capsys, *argv, prometheus=None, found=HISTORY, read=None, **options):
    prometheus = prometheus or Prometheus({"h7": flat(0.03), "h5": flat(0.003)})
    code = main(args(*argv, **options), prometheus=prometheus, read=read or reader(found))
    assert code == 2
    return one_line(capsys)


def test_a_bad_workload_an_unknown_revision_or_service_is_exit_2(args, capsys):
    assert "give namespace/kind/name" in refused(args, capsys, workload="shop/Pod/checkout")
    assert "no revision 9" in refused(args, capsys, revision="9")
    assert "no revision 4" in refused(args, capsys, "--against=4")
    assert "against itself" in refused(args, capsys, "--against=7")
    assert "no revision before 3" in refused(args, capsys, revision="3")
    assert "not a revision number" in refused(args, capsys, revision="seven")
    assert "no service 'cart'" in refused(args, capsys, "--service=cart")
    assert "no service of the policy matches" in refused(
        args, capsys, workload="shop/Deployment/cart"
    )
    assert "'plain' has no judgment KPIs" in refused(args, capsys, workload="shop/Deployment/plain")
    assert "--window" in refused(args, capsys, "--window=20s")  # fewer than 3 steps
    assert "--window" in refused(args, capsys, "--confidence=1.5")


def test_a_revision_without_a_pod_hash_is_exit_2(args, capsys):
    found = revisions(replica_set(5, 120), replica_set(7, 20, pod_hash=""))
    assert "revision 7 of default/shop/Deployment/checkout has no pod template hash" in refused(
        args, capsys, found=found
    )


def test_the_cluster_away_or_without_the_workload_is_exit_2(args, capsys):
    def missing(workload):
        raise NotFound("deployments.apps 'checkout' not found")

    def away(workload):
        raise TransientError("connection refused")

    assert "is not in the cluster" in refused(args, capsys, read=missing)
    assert "the cluster could not be read: connection refused" in refused(args, capsys, read=away)


def test_no_prometheus_or_none_answering_is_exit_2(args, capsys, monkeypatch):
    # No --prometheus, no PROMETHEUS_URL.
    code = main(args(), read=reader())
    assert code == 2 and "no Prometheus" in one_line(capsys)
    assert main(args("--prometheus=localhost:9090"), read=reader()) == 2
    assert "give an http(s) URL" in one_line(capsys)

    class Away(Prometheus):
        def query_range(self, **query):
            raise TransientError("connection refused")

    line = refused(args, capsys, prometheus=Away({}))
    assert "Prometheus could not answer: connection refused" in line


def test_a_bad_policy_or_environment_is_exit_2(args, capsys, monkeypatch):
    args.policy.write_text("mode: [not, a, mode]\n")
    assert "invalid policy: mode" in refused(args, capsys)
    args.policy.write_text("services: {")
    assert "not valid YAML" in refused(args, capsys)
    args.policy.write_text(yaml.safe_dump(POLICY))
    monkeypatch.setenv("BACKSTOP_INSECURE", "perhaps")
    assert "the environment's settings: BACKSTOP_INSECURE" in refused(args, capsys)
