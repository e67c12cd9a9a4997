"""`backstop judge`'s own parts: the workload it is given, the revision it compares with,
what it prints, and the exit codes of what it cannot judge."""

import argparse

import pytest

from cli.judge import CannotJudge, _before, add_arguments, main, parse_workload, summary
from core.models import Workload


def test_a_workload_is_namespace_kind_name_with_an_optional_cluster():
    assert parse_workload("shop/Deployment/checkout", "local") == Workload(
        "local", "shop", "Deployment", "checkout"
    )
    assert parse_workload("eu/shop/Rollout/checkout", "local").cluster == "eu"
    for bad in ("checkout", "shop/Pod/checkout", "shop//checkout", "a/b/c/d/e"):
        with pytest.raises(CannotJudge):
            parse_workload(bad, "local")


def test_the_revision_compared_with_is_the_one_before():
    assert _before("7", [3, 5, 6, 7, 9]) == "6"
    with pytest.raises(CannotJudge):
        _before("3", [3, 4])
    with pytest.raises(CannotJudge):
        _before("latest", [3, 4])


def test_the_summary_is_a_line_per_kpi_and_safe_for_a_terminal():
    record = {
        "workload": "default/shop/Deployment/checkout",
        "revision": "7",
        "against": "6",
        "verdict": "confirmed",
        "kpis": [
            {
                "name": "5xx\x1b[31m",
                "verdict": "confirmed",
                "how": "side_by_side",
                "n_new": 40,
                "n_old": 40,
                "median_new": 0.05,
                "median_old": 0.001,
                "p_value": 1e-9,
                "shift": 0.049,
                "allowed": 0.0001,
                "reason": "worse",
            },
            {"name": "p99", "verdict": "nodata", "reason": "Prometheus could not answer"},
        ],
    }
    text = summary(record)
    assert text.splitlines()[0].endswith("revision 7 against 6: confirmed")
    assert "median new 0.05" in text and "p 1e-09" in text and "\x1b" not in text
    assert "p99: nodata (not compared, 0/0 points" in text


def test_what_cannot_be_judged_is_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text("mode: enforce\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--workload=shop/Deployment/checkout", "--revision=2", f"--config={policy}"]
    )
    assert main(args) == 2
    assert "no service with judgment KPIs" in capsys.readouterr().err
    policy.write_text("mode: [not, a, mode]\n")
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("judge: ")
