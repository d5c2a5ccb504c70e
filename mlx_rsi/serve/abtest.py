"""A/B tests between versions: weighted, sticky routing and the report that reads it.

A client (``X-Client-Id`` header or the request's ``user`` field) always lands on
the same version: its id is hashed to a point in [0, 1) and the weights split that
interval. Requests without a client id are spread by their own request id. The
report compares feedback success rates with Wilson intervals and a two-proportion
z-test, and says when the evidence is not yet enough to call a winner.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass
from typing import Any

from mlx_rsi.errors import UsageError
from mlx_rsi.names import check_name

Z95 = 1.959963984540054
MIN_FEEDBACK_PER_ARM = 10


def parse_weights(spec: str) -> dict[str, float]:
    """``"v1.1:0.5,v1.2:0.5"`` → normalized weights; one clear line when malformed."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, raw = part.partition(":")
        if not sep:
            raise UsageError(f"--ab entry '{part}' has no weight", hint="write it as v1.2:0.5")
        check_name(name.strip(), "version")
        try:
            weight = float(raw)
        except ValueError:
            raise UsageError(f"--ab weight '{raw}' of {name} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise UsageError(f"--ab weight of {name} must be a number >= 0, got {raw}")
        if name.strip() in weights:
            raise UsageError(f"--ab names {name} twice")
        weights[name.strip()] = weight
    total = sum(weights.values())
    if len(weights) < 2 or total <= 0:
        raise UsageError(
            "--ab needs at least two versions with a positive total weight",
            hint="e.g. --ab v1.1:0.5,v1.2:0.5",
        )
    return {name: w / total for name, w in weights.items()}


class Router:
    """Maps a client id to a version by weight, the same version every time."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = dict(weights)
        self._names = list(weights)

    def choose(self, client_id: str) -> str:
        digest = hashlib.sha256(client_id.encode("utf-8")).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for name in self._names:
            edge += self.weights[name]
            if point < edge:
                return name
        return self._names[-1]


@dataclass
class ArmStats:
    version: str
    requests: int
    feedback: int
    successes: int
    latencies_ms: list[float]

    @property
    def feedback_rate(self) -> float:
        return self.feedback / self.requests if self.requests else 0.0

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.feedback if self.feedback else None

    def success_interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.successes, self.feedback)

    def latency(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)


@dataclass
class AbReport:
    arms: list[ArmStats]
    leader: str | None
    p_value: float | None
    enough_evidence: bool
    verdict: str


def ab_report(records: list[dict[str, Any]], versions: list[str] | None = None) -> AbReport:
    """Per-version requests, feedback and success from the served records."""
    arms = _arms(records)
    if versions:
        arms = {v: arms.get(v) or ArmStats(v, 0, 0, 0, []) for v in versions}
    ranked = sorted(arms.values(), key=lambda a: a.success_rate or -1.0, reverse=True)
    if len(ranked) < 2:
        return AbReport(ranked, None, None, False, "need served requests from two versions")
    first, second = ranked[0], ranked[1]
    p = two_proportion_p(first.successes, first.feedback, second.successes, second.feedback)
    enough = (
        p is not None and p < 0.05 and min(first.feedback, second.feedback) >= MIN_FEEDBACK_PER_ARM
    )
    if first.success_rate is None:
        verdict = "no feedback yet: ask users to rate answers (/v1/feedback or mlx-rsi chat)"
        return AbReport(ranked, None, p, False, verdict)
    if enough:
        verdict = f"{first.version} is ahead (p = {p:.3f})"
    else:
        need = max(0, MIN_FEEDBACK_PER_ARM - min(first.feedback, second.feedback))
        more = f"; at least {need} more rated answers per version" if need else ""
        shown = f"p = {p:.2f}" if p is not None else "no test possible"
        verdict = f"{first.version} leads, but the evidence is not enough yet ({shown}{more})"
    return AbReport(ranked, first.version, p, enough, verdict)


def _arms(records: list[dict[str, Any]]) -> dict[str, ArmStats]:
    version_of: dict[str, str] = {}
    arms: dict[str, ArmStats] = {}
    for record in records:
        meta = record.get("metadata")
        if isinstance(meta, dict) and meta.get("request_id") and meta.get("version"):
            version = str(meta["version"])
            arm = arms.setdefault(version, ArmStats(version, 0, 0, 0, []))
            arm.requests += 1
            if isinstance(meta.get("latency_ms"), int | float):
                arm.latencies_ms.append(float(meta["latency_ms"]))
            version_of[str(meta["request_id"])] = version
    seen: set[str] = set()
    for record in records:
        feedback = record.get("feedback")
        if not isinstance(feedback, dict):
            continue
        request_id = str(feedback.get("request_id"))
        if request_id in seen or request_id not in version_of:
            continue  # the first rating of a request counts
        seen.add(request_id)
        arm = arms[version_of[request_id]]
        arm.feedback += 1
        arm.successes += 1 if feedback.get("success") is True else 0
    return arms


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Two-sided p-value of a pooled two-proportion z-test (None when undefined)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = abs(s1 / n1 - s2 / n2) / se
    return math.erfc(z / math.sqrt(2))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    index = min(98, max(0, round(q * 100) - 1))
    return cuts[index]
