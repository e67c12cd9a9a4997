"""`backstop judge`: is revision N of a workload worse than the one before it? The same
judgment a rollback runs (core/judging.py), from the command line, for tuning a service's
judgment KPIs and for a pipeline's gate:

    backstop judge --workload shop/Deployment/checkout --revision 7 [--against 6] [--json]

The revisions' pods are found in the cluster (their ReplicaSets or ControllerRevisions, via
the kubeconfig Backstop's worker uses); the KPIs and window from the policy
($BACKSTOP_CONFIG or --config; the service whose match the workload's labels satisfy, or
--service); Prometheus from $PROMETHEUS_URL or --prometheus. Revision N's window starts
when its ReplicaSet or ControllerRevision was created.

Exit 0 unless the new revision is confirmed worse (1); 2 when it cannot be judged as asked
(a bad workload, an unknown revision, no judgment KPIs, no Prometheus, the cluster away).
"""

import argparse
import json
import sys
from pathlib import Path

from config.policy import PolicyError, load_policy
from config.settings import DEFAULT_CONFIG_PATH, Settings
from core.clusters import Clusters
from core.errors import PermanentError, TransientError
from core.gates import UnknownService, service_of
from core.integrations.prometheus import Prometheus
from core.judging import judge
from core.models import Workload
from core.records import utcnow
from workers.preflight import read_revisions, started_at
from workers.revert import template_hash

KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Rollout")


class CannotJudge(Exception):
    """What was asked cannot be judged: said in one line, exit 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's options on `parser`."""
    parser.add_argument(
        "--workload", required=True, help="namespace/kind/name (or cluster/namespace/kind/name)"
    )
    parser.add_argument("--revision", required=True, help="the revision to judge")
    parser.add_argument("--against", help="the revision to compare with (default: the one before)")
    parser.add_argument("--service", help="the policy service whose judgment KPIs apply")
    parser.add_argument("--config", type=Path, help="policy file (default: $BACKSTOP_CONFIG)")
    parser.add_argument("--prometheus", help="Prometheus base URL (default: $PROMETHEUS_URL)")
    parser.add_argument("--json", action="store_true", help="print the judgment's record")


def main(args: argparse.Namespace) -> int:
    """Judge, print, and exit 0, 1 or 2 (see the module's docstring)."""
    try:
        record = run(args, Settings())
    except CannotJudge as exc:
        print(f"judge: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=2) if args.json else summary(record))
    return 1 if record["verdict"] == "confirmed" else 0


def run(args: argparse.Namespace, settings: Settings, *, clusters=None) -> dict:
    """The judgment's record, or CannotJudge."""
    try:
        policy = load_policy(args.config or settings.config_path or DEFAULT_CONFIG_PATH)
    except PolicyError as exc:
        raise CannotJudge(str(exc)) from None
    workload = parse_workload(args.workload, policy.cluster)
    try:
        service = service_of(policy, workload, args.service)
    except UnknownService as exc:
        raise CannotJudge(str(exc)) from None
    if service is None or service.judgment is None or not service.judgment.kpis:
        raise CannotJudge(f"no service with judgment KPIs applies to {workload.key} (--service)")
    url = args.prometheus or settings.prometheus_url
    if not url:
        raise CannotJudge("no Prometheus: --prometheus or PROMETHEUS_URL")
    try:
        kube = (clusters or Clusters(policy, settings)).kube(workload.cluster)
        revisions = read_revisions(kube, workload)
    except (TransientError, PermanentError) as exc:
        raise CannotJudge(f"the cluster could not be read: {exc}") from None
    revision = str(args.revision)
    against = args.against or _before(revision, revisions.numbers())
    for number in (revision, against):
        if number not in revisions.children:
            raise CannotJudge(f"{workload.key} has no revision {number} in the cluster")
    children = revisions.children
    record = judge(
        Prometheus(url),
        service.judgment,
        workload,
        bad_hash=template_hash(workload.kind, children[revision]),
        target_hash=template_hash(workload.kind, children[against]),
        deployed_at=started_at(revision, revisions, {}) or utcnow(),
        now=utcnow(),
    )
    return {"workload": workload.key, "revision": revision, "against": against, **record}


def parse_workload(text: str, default_cluster: str) -> Workload:
    """`namespace/kind/name` or `cluster/namespace/kind/name`."""
    parts = text.split("/")
    if len(parts) == 3:
        parts.insert(0, default_cluster)
    if len(parts) != 4 or not all(parts) or parts[2] not in KINDS:
        raise CannotJudge(
            f"--workload {text!r}: give namespace/kind/name, kind one of {', '.join(KINDS)}"
        )
    return Workload(*parts)


def _before(revision: str, numbers: list[int]) -> str:
    if not revision.isdigit():
        raise CannotJudge(f"--revision {revision!r} is not a revision number")
    earlier = [n for n in numbers if n < int(revision)]
    if not earlier:
        raise CannotJudge(f"no revision before {revision} to compare with (--against)")
    return str(max(earlier))


def summary(record: dict) -> str:
    """The record as a reader wants it: the verdict, then a line per KPI."""
    lines = [
        f"{record['workload']}: revision {record['revision']} against {record['against']}: "
        f"{record['verdict']}"
    ]
    for kpi in record["kpis"]:
        numbers = ", ".join(
            f"{name} {_number(kpi.get(key))}"
            for name, key in (
                ("median new", "median_new"),
                ("median old", "median_old"),
                ("p", "p_value"),
                ("shift", "shift"),
                ("allowed", "allowed"),
            )
        )
        points = f"{kpi.get('n_new', 0)}/{kpi.get('n_old', 0)} points"
        how = kpi.get("how", "not compared")
        lines.append(f"  {kpi['name']}: {kpi['verdict']} ({how}, {points}; {numbers})")
        lines.append(f"    {kpi.get('reason', '')}")
    return "\n".join(_plain(line) for line in lines)


def _number(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _plain(text: str) -> str:
    """Names and reasons come from the policy and the cluster: no terminal control codes."""
    return "".join(c if c.isprintable() else "?" for c in text)
