"""P7: the store's footprint in Redis, and ingest and decision latency, store full vs empty.

Run with `make bench-store`. Everything is written through Backstop's own code on real
redis-servers started as the project starts them (cli/localredis.py, no persistence so that
AOF buffers do not blur the numbers):

- **the week store**: bench/dashboard.py's week of operation (10,000 notifications,
  decisions of every outcome, 500 rollbacks with steps, verification and evidence, incidents,
  audit entries). `MEMORY USAGE` on every key of a kind gives the bytes of a typical record.
- **the full store**: fresh alerts in webhooks of 10 through core/intake.py (the receiver's
  path: record each episode and its stream event, decide it, store the decision) until the
  configured caps — IntakePolicy's max_episodes and events_max_len, the decision store's
  MAX_DECISIONS — are reached and passed by 10 %. `INFO memory`'s used_memory is read
  along the way: bytes per alert, and whether the store stops growing at its caps.
- **latency**: one webhook of 10 new alerts through the intake, and one kill-switch decision
  through the engine (a recently deployed workload, so correlation, the rules and a dry-run
  job), timed on the full store and on an empty one in alternating rounds. Target: full /
  empty ≤ 1.2 at the median.

From these, the memory of a default install with every cap reached: the target is 1 GiB.
"""

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import redis

from bench import dashboard
from bench.results import record
from bench.table import machine
from cli.localredis import LocalRedis
from config.policy import Policy
from core.assembly import assemble
from core.connection import connect
from core.intake import Intake
from core.models import AlertEvent, Workload
from core.records import utcnow
from core.store import decisions, incidents, keys, rollbacks
from core.store.automation import AUDIT_MAX
from core.store.rollouts import rollout_for

HERE = Path(__file__).resolve().parent
GIB = 2**30
LATENCY_TARGET = 1.2
WORKLOADS = 300  # the fleet the full store's alerts name
PER_WEBHOOK = 10
# Dry-run, decisions at once: a kill switch of a recently deployed workload goes through
# correlation and the rules to a dry-run job, the decision path with the most reads.
POLICY = {"mode": "dry-run", "defaults": {"min_firing": "0s", "known_good_min_age": "0s"}}
KILL_SWITCH = {"backstop_rollback": "true"}


def server(work: Path, name: str) -> LocalRedis:
    """A redis-server of our own, without persistence (its buffers would blur the bytes);
    `with` starts and stops it."""
    return LocalRedis(work / name, persist=False)


def used(client: redis.Redis) -> int:
    """Bytes Redis has allocated now (INFO memory used_memory)."""
    return int(client.info("memory")["used_memory"])


def alert(number: int, *, workload: str, kill_switch: bool = False) -> AlertEvent:
    """A fresh Alertmanager alert (never sent before) naming `workload` in namespace shop,
    shaped like P1's."""
    labels = {
        "alertname": "CheckoutHigh5xx",
        "namespace": "shop",
        "deployment": workload,
        "severity": "critical",
        "pod": f"{workload}-{number % 7}",
        "region": "eu-west-1",
        **(KILL_SWITCH if kill_switch else {}),
    }
    return AlertEvent(
        source="alertmanager",
        fingerprint=f"{number:016x}",
        status="firing",
        labels=labels,
        annotations={"summary": "5xx ratio above 1% for 5m", "runbook_url": "https://runbooks/5xx"},
        starts_at=utcnow() - timedelta(seconds=5),
        generator_url="http://prometheus:9090/graph?g0.expr=job%3Aerrors%3Aratio5m",
        group_key='{}:{alertname="CheckoutHigh5xx"}',
        receiver="backstop",
        external_url="http://alertmanager:9093",
    )


def webhook(first: int) -> list[AlertEvent]:
    """Ten fresh alerts, numbered from `first`, across the fleet; one in ten a kill switch."""
    return [
        alert(n, workload=f"svc-{n % WORKLOADS}", kill_switch=n % 10 == 0)
        for n in range(first, first + PER_WEBHOOK)
    ]


def deploy_fleet(store, policy: Policy) -> None:
    """A rollout a minute ago of every workload, so kill switches find a recent deployment."""
    for index in range(WORKLOADS):
        workload = Workload(policy.cluster, "shop", "Deployment", f"svc-{index}")
        for revision in ("1", "2"):
            rollout = rollout_for(
                workload,
                revision=revision,
                started_at=utcnow() - timedelta(days=1 if revision == "1" else 0, minutes=1),
                images=[f"registry/svc-{index}:{revision}"],
                sources=["watcher"],
            )
            store.rollouts.record_observed(rollout, merge_window=policy.watch.ci_merge_window)


# -- bytes per record ----------------------------------------------------------------------


def key_bytes(client: redis.Redis, pattern: str, limit: int = 2_000) -> dict:
    """MEMORY USAGE (every element counted: SAMPLES 0) of up to `limit` keys matching
    `pattern`: their count and mean, in bytes."""
    sizes = []
    for key in client.scan_iter(match=pattern, count=1_000):
        sizes.append(int(client.memory_usage(key, samples=0) or 0))
        if len(sizes) >= limit:
            break
    return {"keys": len(sizes), "mean_bytes": round(statistics.fmean(sizes)) if sizes else 0}


def per_entry(client: redis.Redis, key: str, count: int) -> int:
    """Bytes per entry of one index or stream key (MEMORY USAGE / entries)."""
    total = int(client.memory_usage(key, samples=0) or 0)
    return round(total / count) if count else 0


def week_records(work: Path) -> dict:
    """Bytes of a typical record of each kind, from bench/dashboard.py's week of operation."""
    with server(work, "week") as local:
        client = connect(local.url)
        policy = Policy()
        store, _ = assemble(policy, client)
        dashboard.fill(store, policy, seed=7)
        found = {
            kind: key_bytes(client, prefix + "*")
            for kind, prefix in (
                ("episode", keys.EPISODE),
                ("decision", keys.DECISION),
                ("rollback", keys.ROLLBACK),
                ("evidence", keys.EVIDENCE),
                ("incident", keys.INCIDENT),
                ("rollout", keys.ROLLOUT),
            )
        }
        found["audit_entry"] = {
            "mean_bytes": per_entry(client, keys.AUDIT, client.xlen(keys.AUDIT))
        }
        found["used_memory_mb"] = round(used(client) / 2**20, 1)
        client.close()
    return found


# -- the full store ------------------------------------------------------------------------


def fill(intake: Intake, client: redis.Redis, alerts: int, start: int = 0) -> list[dict]:
    """Ingest `alerts` fresh alerts in webhooks of 10; used_memory every 10 % of the way."""
    marks, step = [], max(PER_WEBHOOK, alerts // 10)
    for first in range(start, start + alerts, PER_WEBHOOK):
        intake.ingest(webhook(first))
        done = first + PER_WEBHOOK - start
        if done % step == 0:
            marks.append({"alerts": done, "used_memory": used(client)})
    return marks


def contents(client: redis.Redis) -> dict:
    """How many records of each capped kind the store holds."""
    return {
        "episodes": client.zcard(keys.EPISODES),
        "stream_events": client.xlen(keys.EVENTS),
        "decisions": client.zcard(keys.DECISIONS),
    }


# -- latency, full vs empty ----------------------------------------------------------------


class Target:
    """One store under test: its intake and engine, and a counter of fresh alerts."""

    def __init__(self, url: str, policy: Policy, first: int):
        self.client = connect(url)
        self.store, self.engine = assemble(policy, self.client)
        self.intake = Intake(self.engine, write_behind=False)
        self.next = first

    def ingest_ms(self) -> float:
        """One webhook of 10 new alerts, recorded and decided (ms)."""
        events = webhook(self.next)
        self.next += PER_WEBHOOK
        started = time.perf_counter()
        self.intake.ingest(events)
        return (time.perf_counter() - started) * 1000

    def decide_ms(self) -> float:
        """One kill switch of a recently deployed workload, decided by the engine (ms)."""
        event = alert(self.next, workload=f"svc-{self.next % WORKLOADS}", kill_switch=True)
        self.next += 1
        started = time.perf_counter()
        self.engine.on_firing(
            episode_id=event.episode_id, labels=event.labels, starts_at=event.starts_at
        )
        return (time.perf_counter() - started) * 1000


def latencies(full: Target, empty: Target, rounds: int, per_round: int) -> dict:
    """Both operations on both stores, rounds alternating which goes first."""
    times: dict[str, dict[str, list[float]]] = {
        op: {"full": [], "empty": []} for op in ("ingest", "decision")
    }
    for round_number in range(rounds):
        order = [("full", full), ("empty", empty)]
        for name, target in order if round_number % 2 == 0 else order[::-1]:
            for _ in range(per_round):
                times["ingest"][name].append(target.ingest_ms())
                times["decision"][name].append(target.decide_ms())
    summary = {}
    for op, by_store in times.items():
        row = {name: _percentiles(values) for name, values in by_store.items()}
        row["ratio_p50"] = round(row["full"]["p50_ms"] / row["empty"]["p50_ms"], 3)
        summary[op] = row
    return summary


def _percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "n": len(ordered),
    }


# -- the run -------------------------------------------------------------------------------


def run(alerts: int | None, rounds: int, per_round: int) -> dict:
    """Measure everything; return the P7 entry for bench/results.json."""
    policy = Policy.model_validate(POLICY)
    caps = {
        "max_episodes": policy.intake.max_episodes,
        "events_max_len": policy.intake.events_max_len,
        "max_decisions": decisions.MAX_DECISIONS,
        "max_rollbacks": rollbacks.MAX_ROLLBACKS,
        "max_incidents": incidents.MAX_INCIDENTS,
        "audit_max": AUDIT_MAX,
    }
    # Past every count cap by 10 %, so the store shows it stops growing there.
    alerts = alerts or int(max(caps["max_episodes"], caps["max_decisions"]) * 1.1)
    work = Path(tempfile.mkdtemp(prefix="backstop-bench-store-"))
    week = week_records(work)
    with server(work, "full") as full_redis, server(work, "empty") as empty_redis:
        full = Target(full_redis.url, policy, first=0)
        empty = Target(empty_redis.url, policy, first=0)
        for target in (full, empty):
            deploy_fleet(target.store, policy)
        base = used(full.client)
        started = time.monotonic()
        marks = fill(full.intake, full.client, alerts)
        fill_seconds = time.monotonic() - started
        held = contents(full.client)
        at_caps = used(full.client) - base
        full_records = {
            "episode": key_bytes(full.client, keys.EPISODE + "*"),
            "decision": key_bytes(full.client, keys.DECISION + "*"),
            "stream_event": {
                "mean_bytes": per_entry(full.client, keys.EVENTS, held["stream_events"])
            },
        }
        timing = latencies(full, empty, rounds, per_round)
        for target in (full, empty):
            target.client.close()
    first = next(m for m in marks if m["alerts"] >= alerts // 10)
    below_cap = [m for m in marks if m["alerts"] <= caps["max_episodes"]]
    per_alert = (below_cap[-1]["used_memory"] - first["used_memory"]) / max(
        1, below_cap[-1]["alerts"] - first["alerts"]
    )
    default = projection(at_caps, caps, week, full_records)
    ratios = [timing["ingest"]["ratio_p50"], timing["decision"]["ratio_p50"]]
    return {
        "id": "P7",
        "what": "store footprint: Redis for a default install at every cap; full/empty latency",
        "measured": round(default["total_mb"], 1),
        "unit": "MB at the caps",
        "target": f"<= 1024 MB; full/empty p50 <= {LATENCY_TARGET}",
        "pass": default["total_mb"] <= GIB / 2**20 and max(ratios) <= LATENCY_TARGET,
        "bytes_per_alert": round(per_alert),
        "at_caps_mb": round(at_caps / 2**20, 1),
        "held_at_caps": held,
        "growth": [{**m, "used_memory": m["used_memory"] - base} for m in marks],
        "records_full_store": full_records,
        "records_week": week,
        "default_install": default,
        "latency": timing,
        "caps": caps,
        "settings": {
            "alerts": alerts,
            "fill_seconds": round(fill_seconds, 1),
            "rounds": rounds,
            "per_round": per_round,
            **machine(),
        },
    }


# Rollouts are bounded by age (90 days), not by count: this many is a busy cluster's quarter
# (1,100 deploys a day), stated beside the result.
ROLLOUTS_ASSUMED = 100_000


def projection(at_caps: int, caps: dict, week: dict, full_records: dict) -> dict:
    """Bytes of a default install with every cap reached: the full store as measured, with
    its decisions and episodes as large as the week's mix when those are larger, plus the
    rollbacks (each with evidence), incidents, audit entries and rollouts at their caps."""
    parts = {"episodes_events_decisions": at_caps}
    for kind, cap in (("decision", caps["max_decisions"]), ("episode", caps["max_episodes"])):
        extra = week[kind]["mean_bytes"] - full_records[kind]["mean_bytes"]
        parts[f"{kind}s_as_large_as_the_week_mix"] = max(0, extra) * cap
    parts["rollbacks_with_evidence"] = caps["max_rollbacks"] * (
        week["rollback"]["mean_bytes"] + week["evidence"]["mean_bytes"]
    )
    parts["incidents"] = caps["max_incidents"] * week["incident"]["mean_bytes"]
    parts["audit"] = caps["audit_max"] * week["audit_entry"]["mean_bytes"]
    parts["rollouts"] = ROLLOUTS_ASSUMED * week["rollout"]["mean_bytes"]
    mb = {name: round(value / 2**20, 1) for name, value in parts.items()}
    return {"parts_mb": mb, "total_mb": sum(parts.values()) / 2**20}


def main() -> int:
    """Run P7, print what it found, record it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=None, help="default: 110%% of the caps")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=50)
    args = parser.parse_args()
    result = run(args.alerts, args.rounds, args.per_round)
    held = result["held_at_caps"]
    print(
        f"filled with {result['settings']['alerts']:,} alerts in "
        f"{result['settings']['fill_seconds']} s: {held['episodes']:,} episodes, "
        f"{held['stream_events']:,} stream events, {held['decisions']:,} decisions, "
        f"{result['at_caps_mb']} MB; {result['bytes_per_alert']:,} bytes per alert"
    )
    for kind, row in {**result["records_week"], **result["records_full_store"]}.items():
        if isinstance(row, dict):
            print(f"  {kind:<13} {row['mean_bytes']:>8,} bytes (MEMORY USAGE)")
    for name, mb in result["default_install"]["parts_mb"].items():
        print(f"  {name:<40} {mb:>8} MB")
    for op, row in result["latency"].items():
        print(
            f"{op:<9} p50 full {row['full']['p50_ms']} ms, empty {row['empty']['p50_ms']} ms "
            f"(ratio {row['ratio_p50']}); p99 {row['full']['p99_ms']} / {row['empty']['p99_ms']}"
        )
    verdict = "PASS" if result["pass"] else "FAIL"
    print(f"P7 default install {result['measured']} MB (target {result['target']}): {verdict}")
    record(result, HERE / "results.json")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
