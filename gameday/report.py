"""The game-day report: a timeline per scenario on the terminal, and the JSON file."""

import json
from datetime import datetime
from pathlib import Path


def _offset(at: str, start: datetime) -> str:
    return f"+{(datetime.fromisoformat(at) - start).total_seconds():7.1f}s"


def render(entry: dict) -> str:
    """One scenario as text: verdict, timeline with offsets, checks, overhead, links."""
    verdict = "PASS" if entry["verdict"] == "pass" else "FAIL"
    lines = [f"== {entry['scenario']}: {verdict} — {entry['expectation']}"]
    timeline = entry["timeline"]
    if timeline:
        start = datetime.fromisoformat(timeline[0]["at"])
        previous = start
        for event in timeline:
            moment = datetime.fromisoformat(event["at"])
            step = (moment - previous).total_seconds()
            lines.append(f"   {_offset(event['at'], start)}  (+{step:5.1f}s)  {event['event']}")
            previous = moment
    for check in entry["checks"]:
        mark = "ok " if check["ok"] else "NO "
        detail = f" — {check['detail']}" if check["detail"] and not check["ok"] else ""
        lines.append(f"   [{mark}] {check['check']}{detail}")
    if entry["error"]:
        lines.append(f"   error: {entry['error']}")
    if entry["overhead_s"]:
        shown = ", ".join(f"{k} {v}" for k, v in entry["overhead_s"].items())
        lines.append(f"   Backstop overhead (s, net of configured windows): {shown}")
    for name, link in entry["links"].items():
        lines.append(f"   {name}: {link}")
    return "\n".join(lines)


def write(path: Path, entries: list[dict], stack: dict) -> None:
    """The JSON report: the stack's addresses and one entry per scenario."""
    passed = sum(1 for e in entries if e["verdict"] == "pass")
    body = {"passed": passed, "failed": len(entries) - passed, "stack": stack, "scenarios": entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2))
