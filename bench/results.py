"""bench/results.json: one entry per target id, merged by each benchmark."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def record(result: dict, path: Path = RESULTS) -> None:
    """Merge this target's entry (keyed by its "id") into the results file."""
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[result["id"]] = result
    path.write_text(json.dumps(existing, indent=2) + "\n")
