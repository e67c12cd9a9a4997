"""The game day's alerting: ordinary Prometheus rules over the demo service's metrics.

Kill switches carry `backstop_rollback="true"` and keep `namespace` and `deployment`, so
Backstop knows which workload an alert names. Windows are scaled down from production's
minutes to seconds; the shapes are the production ones (a ratio of rates over a window,
held for `for:`).
"""

import json
from pathlib import Path

RATE_WINDOW = "5s"
FOR = "5s"
ERROR_RATIO_THRESHOLD = 0.01  # 1% of requests answered 5xx
P99_THRESHOLD_SECONDS = 1.0


def error_ratio(selector: str = "", window: str = RATE_WINDOW) -> str:
    """The 5xx ratio per deployment over `window` (optionally for one selector)."""
    inner = f",{selector}" if selector else ""
    return (
        f'sum by (namespace, deployment) (rate(demo_requests_total{{code="500"{inner}}}'
        f"[{window}])) / sum by (namespace, deployment) "
        f'(rate(demo_requests_total{{code=~".+"{inner}}}[{window}]))'
    )


def p99_latency(selector: str = "") -> str:
    """The p99 request latency per deployment over RATE_WINDOW, in seconds."""
    inner = f"{{{selector}}}" if selector else ""
    return (
        "histogram_quantile(0.99, sum by (namespace, deployment, le) "
        f"(rate(demo_request_duration_seconds_bucket{inner}[{RATE_WINDOW}])))"
    )


def rules(namespace: str) -> dict:
    """The rule file: two kill switches per deployment of the namespace."""
    selector = f'namespace="{namespace}"'
    kill_switch = {"backstop_rollback": "true", "severity": "critical"}
    return {
        "groups": [
            {
                "name": "gameday-kill-switches",
                "interval": "1s",
                "rules": [
                    {
                        "alert": "High5xxRatio",
                        "expr": f"{error_ratio(selector)} > {ERROR_RATIO_THRESHOLD}",
                        "for": FOR,
                        "labels": kill_switch,
                        "annotations": {
                            "summary": "{{ $labels.deployment }} answers more than 1% 5xx",
                        },
                    },
                    {
                        "alert": "HighP99Latency",
                        "expr": f"{p99_latency(selector)} > {P99_THRESHOLD_SECONDS}",
                        "for": FOR,
                        "labels": kill_switch,
                        "annotations": {
                            "summary": "{{ $labels.deployment }} p99 latency above 1s",
                        },
                    },
                ],
            }
        ]
    }


def write_rules(path: Path, namespace: str) -> Path:
    """Write the rule file (JSON is valid YAML) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rules(namespace), indent=2))
    return path
