"""How a baseline and rule-check findings read: a table for people, JSON for tools."""

import json

from cli.baseline.analysis import Baseline, KpiBaseline
from config.durations import format_duration

COLUMNS = (
    "kpi",
    "segment",
    "period",
    "n",
    "mean",
    "stddev",
    "p50",
    "p95",
    "p99",
    "max",
    "threshold",
    "basis",
    "fp%",
    "fires/wk",
)


def table(baseline: Baseline) -> str:
    """The baseline as an aligned text table, with one rule line per KPI."""
    spec = baseline.spec
    lines = [
        f"{spec.service}: {baseline.start:%Y-%m-%d %H:%M} .. {baseline.end:%Y-%m-%d %H:%M} UTC, "
        f"window {format_duration(spec.window)}, for {format_duration(spec.for_)}"
        + (f", {spec.version.label}={spec.version.value}" if spec.version else "")
        + f"; peak {spec.peak.days} {spec.peak.hours} {spec.peak.timezone}",
        "",
    ]
    rows = [row for kpi in baseline.kpis for row in _rows(kpi)]
    widths = [max(len(str(cell)) for cell in column) for column in zip(COLUMNS, *rows, strict=True)]
    for cells in (COLUMNS, *rows):
        lines.append(
            "  ".join(_align(cell, width) for cell, width in zip(cells, widths, strict=True))
        )
    lines.append("")
    for kpi in baseline.kpis:
        lines.append(_rule_line(spec.for_, kpi))
    return "\n".join(lines) + "\n"


def as_json(document: dict) -> str:
    """Indented JSON."""
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def _rows(kpi: KpiBaseline) -> list[tuple]:
    varying = _varying_labels([row.labels for row in kpi.rows])
    result = []
    for row in kpi.rows:
        d = row.distribution
        segment = ",".join(f"{name}={row.labels.get(name, '')}" for name in varying) or "(all)"
        result.append(
            (
                kpi.kpi.name,
                segment,
                row.period,
                str(d.n),
                *(_number(value) for value in (d.mean, d.stddev, d.p50, d.p95, d.p99, d.max)),
                _number(row.threshold),
                row.basis,
                f"{row.fp_rate * 100:.2f}",
                f"{row.firings_per_week:.2f}",
            )
        )
    return result


def _rule_line(hold, kpi: KpiBaseline) -> str:
    name = kpi.kpi.name
    if kpi.threshold is None:
        return f"{name}: no data in the period (check the selector, version and period)"
    return (
        f"{name}: rule {kpi.operator} {_number(kpi.threshold)} for {format_duration(hold)}: "
        f"{kpi.fp_rate * 100:.2f}% of windows, {kpi.firings_per_week:.2f} firings/week "
        "on the known-good history"
    )


def _varying_labels(label_sets: list[dict[str, str]]) -> list[str]:
    # Show only labels that tell the rows apart; namespace/deployment are usually constant.
    names = sorted({name for labels in label_sets for name in labels})
    return [name for name in names if len({labels.get(name) for labels in label_sets}) > 1]


def _number(value: float) -> str:
    return f"{value:.4g}"


def _align(cell: str, width: int) -> str:
    return cell.ljust(width) if not _numeric(cell) else cell.rjust(width)


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
