"""`backstop judge`: is revision N of a workload worse than the one before it? The same
judgment a rollback runs (core/judging.py), from the command line, for tuning a service's
judgment KPIs and for a pipeline's gate:

    backstop judge --workload shop/Deployment/checkout --revision 7 [--against 6] [--json]

The revisions' pods are found in the cluster (their ReplicaSets or ControllerRevisions, via
the kubeconfig Backstop's worker uses: KUBECONFIG and BACKSTOP_KUBE_CONTEXT, or the policy's
`clusters:`); the KPIs, window and confidence from the policy ($BACKSTOP_CONFIG or
--config; the service whose match the workload's labels satisfy, or --service), the last
two overridable; Prometheus from $PROMETHEUS_URL or --prometheus. Revision N is judged over
its own time as the live revision: from the creation of its ReplicaSet or
ControllerRevision, up to the creation of the next revision's, or now.

Exit 0 unless the new revision is confirmed worse (1); 2 when it cannot be judged as asked
(a bad workload, an unknown revision, no judgment KPIs, no Prometheus or none answering,
the cluster away), with one line on stderr.
"""

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from cli.terminal import printable
from config.judgment import JudgmentPolicy
from config.policy import Policy, PolicyError, load_policy
from config.settings import Settings
from core.clusters import Clusters
from core.errors import IntegrationError
from core.gates import UnknownService, service_of
from core.integrations.kubernetes import NotFound
from core.integrations.prometheus import Prometheus
from core.judging import judge
from core.models import KINDS, Workload
from core.records import utcnow
from workers.preflight import Revisions, read_revisions, started_at
from workers.revert import template_hash

# Reads a workload's revisions from its cluster (workers.preflight.read_revisions).
Reader = Callable[[Workload], Revisions]
COLUMNS = (
    "KPI",
    "VERDICT",
    "HOW",
    "N NEW/OLD",
    "MEDIAN NEW",
    "MEDIAN OLD",
    "P",
    "SHIFT",
    "ALLOWED",
)


class CannotJudge(Exception):
    """What was asked cannot be judged: said in one line, exit 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's options on `parser`."""
    parser.add_argument(
        "--workload", required=True, help="namespace/kind/name (or cluster/namespace/kind/name)"
    )
    parser.add_argument("--revision", required=True, help="the revision to judge")
    parser.add_argument(
        "--against", help="the revision to compare with (default: the highest below --revision)"
    )
    parser.add_argument("--service", help="the policy service whose judgment KPIs apply")
    parser.add_argument("--config", type=Path, help="policy file (default: $BACKSTOP_CONFIG)")
    parser.add_argument("--prometheus", help="Prometheus base URL (default: $PROMETHEUS_URL)")
    parser.add_argument("--window", help="how much of each revision to compare, e.g. 30m")
    parser.add_argument("--confidence", type=float, help="of the one-sided test, e.g. 0.95")
    parser.add_argument("--json", action="store_true", help="print the judgment's record")


def main(
    args: argparse.Namespace, *, prometheus: Prometheus | None = None, read: Reader | None = None
) -> int:
    """Judge, print, and exit 0, 1 or 2 (see the module's docstring); `prometheus` and
    `read` as for `run`."""
    try:
        try:
            settings = Settings()
        except ValidationError as exc:
            raise CannotJudge(f"the environment's settings: {_errors(exc)}") from None
        record = run(args, settings, prometheus=prometheus, read=read)
    except CannotJudge as exc:
        print(f"judge: {_line(str(exc))}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=2) if args.json else summary(record))
    return 1 if record["verdict"] == "confirmed" else 0


def run(
    args: argparse.Namespace,
    settings: Settings,
    *,
    clusters: Clusters | None = None,
    prometheus: Prometheus | None = None,
    read: Reader | None = None,
) -> dict:
    """The judgment's record, or CannotJudge. `clusters`, `prometheus` and `read` replace
    what the settings and policy would give (the cluster, Prometheus, the revisions)."""
    policy = _policy(args, settings)
    workload = parse_workload(args.workload, policy.cluster)
    judgment = _judgment(args, policy, workload)
    client = prometheus or Prometheus(_prometheus_url(args, settings))
    read = read or _reader(clusters or Clusters(policy, settings))
    try:
        revisions = read(workload)
    except NotFound:
        raise CannotJudge(f"{workload.key} is not in the cluster") from None
    except IntegrationError as exc:
        raise CannotJudge(f"the cluster could not be read: {exc}") from None
    revision = str(args.revision)
    against = str(args.against) if args.against else _before(revision, revisions.numbers())
    hashes = []
    for number in (revision, against):
        child = revisions.children.get(number)
        if child is None:
            raise CannotJudge(f"{workload.key} has no revision {number} in the cluster")
        hashes.append(template_hash(workload.kind, child))
        if not hashes[-1]:
            raise CannotJudge(f"revision {number} of {workload.key} has no pod template hash")
    if revision == against:
        raise CannotJudge(f"revision {revision} would be judged against itself (--against)")
    now = utcnow()
    record = judge(
        client,
        judgment,
        workload,
        bad_hash=hashes[0],
        target_hash=hashes[1],
        deployed_at=started_at(revision, revisions, {}) or now,
        now=_live_until(revision, revisions, now),
    )
    if all("windows" not in kpi for kpi in record["kpis"]):
        # Not one query was answered: a pipeline must not read that as "not worse".
        raise CannotJudge(record["kpis"][0]["reason"])
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


def _policy(args: argparse.Namespace, settings: Settings) -> Policy:
    """The policy file of --config, else $BACKSTOP_CONFIG, else config/backstop.yaml."""
    try:
        return load_policy(args.config or settings.config_path)
    except PolicyError as exc:
        problems = "; ".join(str(problem) for problem in exc.problems)
        raise CannotJudge(f"{exc.file}: invalid policy: {problems}") from None


def _judgment(args: argparse.Namespace, policy: Policy, workload: Workload) -> JudgmentPolicy:
    """The service's judgment, with --window and --confidence in place of its own."""
    try:
        service = service_of(policy, workload, args.service)
    except UnknownService as exc:
        raise CannotJudge(str(exc)) from None
    if service is None:
        raise CannotJudge(f"no service of the policy matches {workload.key}: name one (--service)")
    if service.judgment is None or not service.judgment.kpis:
        raise CannotJudge(f"service {service.name!r} has no judgment KPIs")
    changed = {"window": args.window, "confidence": args.confidence}
    changed = {key: value for key, value in changed.items() if value is not None}
    if not changed:
        return service.judgment
    try:
        # Validated again, so an override obeys the policy's own limits (window / step).
        return JudgmentPolicy.model_validate({**service.judgment.model_dump(), **changed})
    except ValidationError as exc:
        raise CannotJudge(f"--window/--confidence: {_errors(exc)}") from None


def _reader(clusters: Clusters) -> Reader:
    """Read a workload's revisions from its own cluster (connected on first use)."""

    def read(workload: Workload) -> Revisions:
        return read_revisions(clusters.kube(workload.cluster), workload)

    return read


def _prometheus_url(args: argparse.Namespace, settings: Settings) -> str:
    url = args.prometheus or settings.prometheus_url
    if not url:
        raise CannotJudge("no Prometheus: give --prometheus or set PROMETHEUS_URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CannotJudge(f"Prometheus {url!r}: give an http(s) URL")
    return url


def _before(revision: str, numbers: list[int]) -> str:
    """The highest revision below `revision`."""
    if not revision.isdigit():
        raise CannotJudge(f"--revision {revision!r} is not a revision number")
    earlier = [n for n in numbers if n < int(revision)]
    if not earlier:
        raise CannotJudge(f"no revision before {revision} to compare with (--against)")
    return str(max(earlier))


def _live_until(revision: str, revisions: Revisions, now: datetime) -> datetime:
    """When the next revision took over from `revision`; now when none has."""
    later = [n for n in revisions.numbers() if revision.isdigit() and n > int(revision)]
    if not later:
        return now
    return started_at(str(min(later)), revisions, {}) or now


def summary(record: dict) -> str:
    """The record as a reader wants it: the verdict, a table row per KPI, its reasons."""
    head = (
        f"{record['workload']}: revision {record['revision']} against {record['against']}: "
        f"{record['verdict']} (confidence {record['confidence']}, mode {record['mode']})"
    )
    rows = [list(COLUMNS)]
    notes = []
    for kpi in record["kpis"]:
        rows.append(
            [
                kpi["name"],
                kpi["verdict"],
                kpi.get("how", "-"),
                f"{kpi.get('n_new', 0)}/{kpi.get('n_old', 0)}",
                *(
                    _number(kpi.get(key))
                    for key in ("median_new", "median_old", "p_value", "shift", "allowed")
                ),
            ]
        )
        baseline = f" Compared with {kpi['baseline']}." if kpi.get("baseline") else ""
        notes.append(f"  {kpi['name']}: {kpi.get('reason', '')}{baseline}")
    rows = [[printable(str(cell)) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join([printable(head), *table, *(printable(note) for note in notes)])


def _number(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _line(text: str) -> str:
    """One line, whatever a library's message held."""
    return " ".join(text.split())


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )
