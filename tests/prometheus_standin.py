"""A stand-in for Backstop's own Prometheus interface (core.integrations.prometheus): range
queries answered per revision hash from level functions, with seeded noise."""

import random
from datetime import datetime, timedelta

from core.integrations.prometheus import Series


class Prometheus:
    """Answers a range query for hash `h` with `level(h, t)` plus noise, every step from
    start to end; hashes with no level give no series."""

    def __init__(self, levels):
        self.levels = levels
        self.asked: list[tuple[str, datetime, datetime]] = []
        self.noise = random.Random(7)

    def query_range(self, *, expr, start, end, step):
        self.asked.append((expr, start, end))
        pod_hash = expr.split('pod_template_hash="')[1].split('"')[0]
        level = self.levels.get(pod_hash)
        if level is None:
            return []
        points, t = [], start
        while t <= end:
            value = level(t)
            if value is not None:
                points.append((t, value * (1 + self.noise.uniform(-0.1, 0.1))))
            t += timedelta(seconds=step)
        return [Series({"pod": pod_hash}, points)] if points else []
