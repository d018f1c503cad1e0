"""The promotion gate: a new model replaces the promoted one only when it earns it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class GatePolicy:
    metric: str = "ndcg_at_10"
    # the candidate beats the popularity baseline by at least this much (relative)
    min_lift_over_baseline: float = 0.10
    # ... and is not worse than the promoted model by more than this (relative)
    max_drop_vs_promoted: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    candidate: float
    baseline: float
    promoted: float | None
    lift_over_baseline: float | None
    change_vs_promoted: float | None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        def fmt(v: float | None, pct: bool = False) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "–"
            return f"{v:+.1%}" if pct else f"{v:.4f}"

        return "\n".join(
            [
                f"| {self.metric} | value | candidate vs it |",
                "|---|---:|---:|",
                f"| candidate | {fmt(self.candidate)} | |",
                f"| popularity baseline | {fmt(self.baseline)} "
                f"| {fmt(self.lift_over_baseline, True)} |",
                f"| promoted model | {fmt(self.promoted)} | {fmt(self.change_vs_promoted, True)} |",
                "",
                ("**promoted**: " if self.passed else "**kept the promoted model**: ")
                + "; ".join(self.reasons),
            ]
        )


def _relative(a: float, b: float) -> float | None:
    if b is None or math.isnan(b) or math.isnan(a):
        return None
    if b == 0:
        return math.inf if a > 0 else 0.0
    return a / b - 1.0


def decide(
    candidate: float,
    baseline: float,
    promoted: float | None,
    policy: GatePolicy | None = None,
) -> GateDecision:
    """Candidate, baseline and promoted-model scores on the same held-out split."""
    policy = policy or GatePolicy()
    reasons: list[str] = []
    lift = _relative(candidate, baseline)
    change = _relative(candidate, promoted) if promoted is not None else None
    ok = True
    if candidate is None or math.isnan(candidate):
        ok = False
        reasons.append("no held-out users to measure the candidate on")
    elif lift is None or lift < policy.min_lift_over_baseline:
        ok = False
        reasons.append(
            f"{policy.metric} {candidate:.4f} is not {policy.min_lift_over_baseline:.0%} above "
            f"the popularity baseline's {baseline:.4f}"
        )
    else:
        reasons.append(f"{lift:+.1%} over the popularity baseline")
    if promoted is None:
        reasons.append("no model promoted yet")
    elif change is not None and change < -policy.max_drop_vs_promoted:
        ok = False
        reasons.append(
            f"{change:+.1%} against the promoted model's {promoted:.4f} "
            f"(tolerance -{policy.max_drop_vs_promoted:.0%})"
        )
    elif change is not None:
        reasons.append(f"{change:+.1%} against the promoted model")
    return GateDecision(ok, policy.metric, candidate, baseline, promoted, lift, change, reasons)
