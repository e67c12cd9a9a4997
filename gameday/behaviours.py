"""How the demo service's pods answer: a behaviour per image tag, and each step's draw.

A pod's behaviour (its 5xx share, its slow share and their durations) follows its image
tag (BEHAVIOURS; a tag ending `-errors-<segment>` fails only that client segment's
requests, at 5 %, for a demo service started with segments). A step's requests are drawn
from it either flat (Flat: exactly the expected counts, fractional, so rates are flat) or
as a real service's would scatter
(Noisy, seeded: whole requests, Poisson around the rate; failures and slow requests
binomial around their ratios; every duration jittered), with the same long-run averages.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace

# A jittered duration is the behaviour's times a log-normal factor of mean 1: its spread.
JITTER_SIGMA = 0.25
# Above this many expected requests in a step, Poisson is drawn by its normal approximation.
NORMAL_ABOVE = 500.0


@dataclass(frozen=True)
class Behaviour:
    """How a pod's requests go: the share answered 500, the share that is slow, durations."""

    error_ratio: float
    slow_ratio: float = 0.0
    fast_seconds: float = 0.05
    slow_seconds: float = 2.5
    # One client segment that fails at its own ratio (a release broken on one platform).
    failing_segment: str = ""
    segment_error_ratio: float = 0.0

    def error_ratio_for(self, segment: str) -> float:
        """The 5xx share of this pod's requests from `segment` ("" for unsegmented)."""
        if segment and segment == self.failing_segment:
            return self.segment_error_ratio
        return self.error_ratio


# Image tag suffix → behaviour; the first suffix the tag ends with wins, else DEFAULT_BEHAVIOUR.
BEHAVIOURS: dict[str, Behaviour] = {
    "-errors": Behaviour(error_ratio=0.05),
    # The seed's canary scenario (bench/safestate.py): a 5xx rate that jumps to 3%.
    "-errors3pct": Behaviour(error_ratio=0.03),
    "-slow": Behaviour(error_ratio=0.001, slow_ratio=0.10),
}
DEFAULT_BEHAVIOUR = Behaviour(error_ratio=0.001)


def image_tag(image: str) -> str:
    """The tag of an image reference, "" if none (a registry's port or a digest is no tag)."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ""


SEGMENT_FAILURE = re.compile(r"-errors-([A-Za-z0-9_.]+)$")


def behaviour_for(image: str) -> Behaviour:
    """The behaviour of pods running `image`."""
    tag = image_tag(image)
    segment = SEGMENT_FAILURE.search(tag)
    if segment is not None:
        return replace(DEFAULT_BEHAVIOUR, failing_segment=segment[1], segment_error_ratio=0.05)
    found = (b for suffix, b in BEHAVIOURS.items() if tag.endswith(suffix))
    return next(found, DEFAULT_BEHAVIOUR)


@dataclass(frozen=True)
class Answered:
    """What one pod answered in one step: requests by outcome, and their durations as
    (seconds, how many) pairs."""

    ok: float
    failed: float
    durations: list[tuple[float, float]]


class Flat:
    """No noise: a step answers exactly `requests`, exactly `error_ratio` of them 500, at
    exactly the behaviour's durations (counts are fractional, rates flat)."""

    def answer(self, requests: float, error_ratio: float, behaviour: Behaviour) -> Answered:
        """What `requests` expected requests at `error_ratio` come to."""
        slow = behaviour.slow_ratio
        return Answered(
            ok=requests * (1 - error_ratio),
            failed=requests * error_ratio,
            durations=[
                (behaviour.fast_seconds, requests * (1 - slow)),
                (behaviour.slow_seconds, requests * slow),
            ],
        )


class Noisy:
    """Seeded noise: a step answers a Poisson number of whole requests around `requests`;
    failures and slow ones are binomial around their ratios; each duration is jittered
    (log-normal, mean-preserving). The same seed and the same calls give the same answers."""

    def __init__(self, seed: int):
        self.random = random.Random(seed)

    def answer(self, requests: float, error_ratio: float, behaviour: Behaviour) -> Answered:
        """What a step expected to see `requests` requests at `error_ratio` came to."""
        count = self.poisson(requests)
        failed = self.binomial(count, error_ratio)
        slow = self.binomial(count, behaviour.slow_ratio)
        durations = [(self.jitter(behaviour.slow_seconds), 1.0) for _ in range(slow)]
        durations += [(self.jitter(behaviour.fast_seconds), 1.0) for _ in range(count - slow)]
        return Answered(ok=float(count - failed), failed=float(failed), durations=durations)

    def poisson(self, mean: float) -> int:
        """A Poisson count of mean `mean` (0 for none)."""
        if not mean > 0:
            return 0
        if mean > NORMAL_ABOVE:
            return max(0, round(self.random.gauss(mean, math.sqrt(mean))))
        # The arrivals of a unit-rate Poisson process up to `mean`.
        count, arrival = 0, self.random.expovariate(1.0)
        while arrival <= mean:
            count += 1
            arrival += self.random.expovariate(1.0)
        return count

    def binomial(self, trials: int, p: float) -> int:
        """How many of `trials` succeed at probability `p`."""
        if trials <= 0 or p <= 0:
            return 0
        if p >= 1:
            return trials
        if p > 0.5:
            return trials - self.binomial(trials, 1 - p)
        # Skip from success to success (geometric gaps) rather than toss every trial.
        log_miss = math.log1p(-p)
        count, position = 0, 0
        while True:
            gap = math.log(1.0 - self.random.random()) / log_miss  # inf for a tiny p
            position += int(min(gap, trials)) + 1
            if position > trials:
                return count
            count += 1

    def jitter(self, seconds: float) -> float:
        """`seconds` times a log-normal factor whose mean is 1."""
        return seconds * self.random.lognormvariate(-(JITTER_SIGMA**2) / 2, JITTER_SIGMA)
