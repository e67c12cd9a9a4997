"""`backstop gameday`: bring up the real pipeline, break things on purpose, check Backstop.

    backstop gameday                          # every scenario (make gameday)
    backstop gameday --scenario bad_deploy --report gameday.json
    backstop gameday --kubeconfig staging.yaml --prometheus-url ... --alertmanager-url ...

Exit status 0 only when every chosen scenario's expectation held.
"""

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from gameday import report
from gameday.catalog import BY_NAME, SCENARIOS
from gameday.scenarios import Run, play, prepare, services
from gameday.stack import Stack, Targets


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="backstop gameday", description=__doc__.split("\n")[0])
    cli.add_argument("--scenario", action="append", choices=sorted(BY_NAME), help="repeatable")
    cli.add_argument("--report", type=Path, help="write the JSON report here")
    cli.add_argument("--workdir", type=Path, help="keep logs and data here (default: temporary)")
    cli.add_argument("--kubeconfig", type=Path, help="an existing cluster instead of a local one")
    cli.add_argument("--prometheus-url", help="an existing Prometheus (see docs/gamedays.md)")
    cli.add_argument("--alertmanager-url", help="an existing Alertmanager (see docs/gamedays.md)")
    cli.add_argument("--namespace", default="gameday", help="where the demo workloads go")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="gameday: %(message)s")
    chosen = [BY_NAME[name] for name in args.scenario] if args.scenario else SCENARIOS
    # Enforce first; the dry-run scenario restarts Backstop in dry-run mode, so it goes last.
    chosen = sorted(chosen, key=lambda s: s.mode != "enforce")
    targets = Targets(args.kubeconfig, args.prometheus_url, args.alertmanager_url)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="backstop-gameday-"))
    print(f"gameday: {len(chosen)} scenario(s); logs and data in {workdir}", flush=True)
    with Stack(workdir, services(chosen), namespace=args.namespace, targets=targets) as stack:
        print(
            f"gameday: stack up; dashboard {stack.receiver.url}/ "
            f"(log in with the token in {workdir / 'api-token'})"
        )
        run = Run(stack)
        prepare(run, chosen)
        entries = []
        for scenario in chosen:
            entry = play(run, scenario).to_json()
            entries.append(entry)
            print(report.render(entry), flush=True)
        described = stack.describe()
    if args.report:
        report.write(args.report, entries, described)
        print(f"gameday: report written to {args.report}")
    failed = [e["scenario"] for e in entries if e["verdict"] != "pass"]
    print(f"gameday: {len(entries) - len(failed)} passed, {len(failed)} failed {failed or ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
