"""P8: time to safe state on the seed's canary scenario, with production's windows.

Run with `make bench-safestate` (about 8 minutes). The game day's real stack with
production's clocks (bench/safestack.py): Prometheus scrapes and evaluates every 15 s, the
kill switch is the canary's 5xx ratio over 2 minutes above 1% held for its `for:`, and
Alertmanager waits `group_wait` 30 s. Each variant is a service of 19 stable pods and a
1-pod canary (5% of its traffic) whose new release answers 3% 500s where the stable one
answers 0.1%. The variants ship at the same moment, so they share Prometheus's phase:

- `for1m`: `for: 1m`, Backstop's `min_firing` 0: the recommended settings, P8's number;
- `for1m-mf1m`: `for: 1m` and `min_firing` 1m: what Backstop's own hold adds;
- `for2m`: `for: 2m`, `min_firing` 0: the same two minutes, held by Prometheus instead.

Fault onset is the first Ready pod running the bad image, safe state the first moment
every Ready pod of the service runs the stable image again (bench/safeprobe.py). The floor
is one scrape interval + the time the 2-minute ratio takes to cross 1% + `for:` +
`group_wait` + the rollout (measured: PATCH → the last bad pod out of service).
"""

import argparse
import itertools
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.results import record
from bench.safeprobe import SafeStateProbe, Watched, wait_until
from bench.safestack import ProductionStack, Variant, Windows
from core.records import Decision, Rollback
from gameday.scenarios import Run, image

TARGET_RATIO = 1.10
STABLE_REPLICAS = 19  # beside a 1-pod canary: the canary takes 5% of the service's traffic
GOOD, BAD = "1.0.0", "1.1.0-errors3pct"  # 0.1% and 3% of requests answered 500
BEFORE, AFTER = 0.001, 0.03  # their ratios (gameday/behaviours.py)
DONE_TIMEOUT = 600.0

VARIANTS = (
    Variant("for1m", hold=60, min_firing=0, headline=True),
    Variant("for1m-mf1m", hold=60, min_firing=60),
    Variant("for2m", hold=120, min_firing=0),
)


def crossing_seconds(windows: Windows, before: float = BEFORE, after: float = AFTER) -> float:
    """How long after the jump the ratio averaged over the rule's window crosses the
    threshold: by then the window holds that long at `after`, the rest at `before`."""
    if after <= windows.threshold:
        raise ValueError("the error rate never crosses the threshold")
    share = max(0.0, windows.threshold - before) / (after - before)
    return windows.rate_window * share


def floor(windows: Windows, variant: Variant, rollout: float) -> dict[str, float]:
    """The pipeline's floor term by term, its total, and the total with Backstop's
    `min_firing` (which overlaps `group_wait`: both start when the alert fires)."""
    terms = {
        "scrape": windows.scrape,
        "window_crossing": round(crossing_seconds(windows), 3),
        "for": variant.hold,
        "group_wait": windows.group_wait,
        "rollout": round(rollout, 3),
    }
    total = sum(terms.values())
    extra = max(0.0, variant.min_firing - windows.group_wait)
    return {**terms, "total": round(total, 3), "with_min_firing": round(total + extra, 3)}


def stages(moments: dict[str, datetime | None]) -> dict[str, float | None]:
    """Seconds between consecutive moments of the pipeline (None where one is missing)."""
    names = list(moments)
    found = {}
    for earlier, later in itertools.pairwise(names):
        a, b = moments[earlier], moments[later]
        found[f"{earlier}->{later}"] = round((b - a).total_seconds(), 3) if a and b else None
    return found


def measure(windows: Windows, variant: Variant, watched: Watched, run: Run) -> dict:
    """One variant's row: its moments, stages, total, floor and ratio."""
    rollbacks = run.rollbacks(variant.canary)
    rollback: Rollback | None = rollbacks[0] if rollbacks else None
    decision = episode = None
    if rollback is not None:
        decision = Decision.model_validate(
            run.stack.api("GET", f"/decisions/{rollback.decision_id}")
        )
        episodes = run.stack.api("GET", "/alerts?limit=1000")["alerts"]
        episode = next((e for e in episodes if e["id"] == decision.episode_id), None)
    steps = {step.name: step for step in rollback.steps} if rollback else {}
    moments = {
        "onset": watched.onset,
        "active": watched.active_at,
        "fired": decision.starts_at if decision else None,
        "webhook": datetime.fromisoformat(episode["first_seen"]) if episode else None,
        "patch": steps["revert"].finished_at if "revert" in steps else None,
        "safe": watched.safe,
    }
    between = stages(moments)
    rollout = between["patch->safe"] or 0.0
    bound = floor(windows, variant, rollout)
    total = (
        (watched.safe - watched.onset).total_seconds() if watched.safe and watched.onset else None
    )
    allowed = None
    if moments["fired"] and moments["webhook"] and moments["patch"]:
        may_act = max(moments["webhook"], moments["fired"] + timedelta(seconds=variant.min_firing))
        allowed = round((moments["patch"] - may_act).total_seconds(), 3)
    stable = run.cluster.image(variant.name) == image(variant.name, GOOD)
    return {
        "for_s": variant.hold,
        "min_firing_s": variant.min_firing,
        "moments": {k: v.isoformat() if v else None for k, v in moments.items()},
        "stages_s": between,
        "backstop_own_s": allowed,
        "total_s": round(total, 3) if total is not None else None,
        "floor_s": bound,
        "ratio": round(total / bound["total"], 3) if total else None,
        "ratio_with_min_firing": round(total / bound["with_min_firing"], 3) if total else None,
        "rollback": rollback.status if rollback else None,
        "ok": bool(total and rollback and rollback.status == "verified" and stable),
        "stable_untouched": stable and not run.rollbacks(variant.name),
    }


def play(workdir: Path, windows: Windows, variants: tuple[Variant, ...]) -> dict[str, dict]:
    """Bring the stack up, ship every canary's bad release at once, wait until each is
    safe and its rollback finished; each variant's row."""
    with ProductionStack(workdir, windows, variants) as stack:
        print(f"safestate: stack up; logs in {workdir}", flush=True)
        run = Run(stack)
        for variant in variants:
            for name, replicas in ((variant.name, STABLE_REPLICAS), (variant.canary, 1)):
                good = image(variant.name, GOOD)
                run.cluster.create(name, good, replicas=replicas, service=variant.name)
        run.cluster.wait_rolled_out(*(n for v in variants for n in (v.name, v.canary)))
        # A rule window of healthy traffic first (and the stable revision known good).
        healthy = windows.rate_window + 2 * windows.scrape
        print(f"safestate: {healthy:g} s of healthy traffic first", flush=True)
        time.sleep(healthy)
        probe = SafeStateProbe(stack.api_client(), stack.namespace, stack.prometheus_url)
        watched = {v.name: probe.watch(v.name, v.canary, image(v.name, GOOD)) for v in variants}
        probe.start()
        try:
            for variant in variants:
                run.cluster.deploy(variant.canary, image(variant.name, BAD))
            print("safestate: the canaries ship the bad release", flush=True)
            wait_until(
                lambda: all(_finished(run, w) for w in watched.values()),
                DONE_TIMEOUT,
                "every variant's safe state and finished rollback",
            )
        finally:
            probe.stop()
        return {v.name: measure(windows, v, watched[v.name], run) for v in variants}


def _finished(run: Run, watched: Watched) -> bool:
    return watched.safe is not None and any(r.terminal for r in run.rollbacks(watched.canary))


def summarize(windows: Windows, rows: dict[str, dict]) -> dict:
    """P8's entry for bench/results.json: the headline variant's ratio, every row."""
    headline = next(v.name for v in VARIANTS if v.headline)
    ratio = rows[headline]["ratio"]
    return {
        "id": "P8",
        "what": "canary, production windows: fault onset -> stable serving 100%, / floor",
        "measured": ratio,
        "unit": "x floor",
        "target": f"<= {TARGET_RATIO} x floor",
        "pass": ratio is not None
        and ratio <= TARGET_RATIO
        and all(row["ok"] and row["stable_untouched"] for row in rows.values()),
        "headline": headline,
        "windows_s": vars(windows),
        "before_after_error_ratio": [BEFORE, AFTER],
        "variants": rows,
    }


def render(result: dict) -> str:
    """The variants as a table, then the verdict."""
    lines = [
        f"{'variant':11} {'for':>5} {'min_f':>6} {'onset→active':>13} {'→fired':>7} "
        f"{'→webhook':>9} {'→patch':>7} {'→safe':>6} {'total':>7} {'floor':>7} {'ratio':>6}"
    ]
    for name, row in result["variants"].items():
        s = row["stages_s"]
        cells = [s["onset->active"], s["active->fired"], s["fired->webhook"]]
        cells += [s["webhook->patch"], s["patch->safe"], row["total_s"], row["floor_s"]["total"]]
        text = [f"{c:.1f}" if c is not None else "-" for c in cells]
        lines.append(
            f"{name:11} {row['for_s']:>5g} {row['min_firing_s']:>6g} {text[0]:>13} "
            f"{text[1]:>7} {text[2]:>9} {text[3]:>7} {text[4]:>6} {text[5]:>7} {text[6]:>7} "
            f"{row['ratio'] or 0:>6.3f}"
        )
    verdict = "PASS" if result["pass"] else "FAIL"
    lines.append(
        f"P8 {result['headline']}: {result['measured']} x floor "
        f"(target {result['target']}): {verdict}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--workdir", type=Path, help="keep logs and data here (default: temporary)")
    args = cli.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="backstop-bench-safestate-"))
    windows = Windows()
    result = summarize(windows, play(workdir, windows, VARIANTS))
    print(render(result), flush=True)
    record(result)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
