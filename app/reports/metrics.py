"""The statistics behind every screen and export, pure functions (no database):

- AAPOR outcome rates (RR1, RR2, COOP1, REF1, CON1) from disposition counts;
- the Wilson 95% interval of a proportion;
- the empirical-Bayes (beta-binomial, method of moments) estimate that ranks small units;
- funnel-plot control limits (Spiegelhalter 2005);
- the composite score.

Definitions are those of ../shared/design/domain.md and are restated in the README.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95%
Z998 = 3.090232306167813  # two-sided 99.8%

# ---------------------------------------------------------------------------
# AAPOR
# ---------------------------------------------------------------------------

AAPOR_CLASSES = ("I", "P", "R", "NC", "O", "UH", "UO", "NE")


@dataclass(frozen=True)
class AaporRates:
    I: int  # noqa: E741 - AAPOR's own letters
    P: int
    R: int
    NC: int
    O: int  # noqa: E741
    UH: int
    UO: int
    NE: int
    RR1: float | None
    RR2: float | None
    COOP1: float | None
    REF1: float | None
    CON1: float | None

    @property
    def cases(self) -> int:
        return self.I + self.P + self.R + self.NC + self.O + self.UH + self.UO + self.NE


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def aapor_rates(counts: Mapping[str, int]) -> AaporRates:
    """RR1 = I / ((I+P) + (R+NC+O) + (UH+UO)); RR2 counts P with I; COOP1 = I / ((I+P)+R+O);
    REF1 = R / (RR1's denominator); CON1 = ((I+P)+R+O) / (RR1's denominator). NE is left out."""
    c = {k: int(counts.get(k, 0) or 0) for k in AAPOR_CLASSES}
    unknown = set(counts) - set(AAPOR_CLASSES)
    if unknown:
        raise ValueError(f"unknown AAPOR classes: {sorted(unknown)}")
    den = (c["I"] + c["P"]) + (c["R"] + c["NC"] + c["O"]) + (c["UH"] + c["UO"])
    coop = (c["I"] + c["P"]) + c["R"] + c["O"]
    return AaporRates(
        **c,
        RR1=_ratio(c["I"], den),
        RR2=_ratio(c["I"] + c["P"], den),
        COOP1=_ratio(c["I"], coop),
        REF1=_ratio(c["R"], den),
        CON1=_ratio(coop, den),
    )


# ---------------------------------------------------------------------------
# Proportions
# ---------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval; None when n = 0. 9/10 -> (0.596, 0.982)."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError("successes must be between 0 and n")
    if n == 0:
        return None
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at 0/n and n/n the closed form gives exactly 0 and 1; rounding must not move them
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class BetaPrior:
    """The prior the empirical-Bayes estimate pulls towards: mean ``mean``, strength
    ``alpha + beta`` (as many pseudo-interviews). ``rho`` is the intra-class correlation the
    moments gave: 0 means the units differ no more than chance, and every unit is pulled all
    the way to the overall rate."""

    alpha: float
    beta: float
    mean: float
    rho: float

    def posterior_mean(self, successes: int, n: int) -> float:
        if math.isinf(self.alpha):
            return self.mean
        return (successes + self.alpha) / (n + self.alpha + self.beta)


def fit_beta_binomial(units: Iterable[tuple[int, int]]) -> BetaPrior | None:
    """Method-of-moments fit of a beta prior to (successes, n) of several units.

    With N = Σn, μ = Σy / N and the weighted sum of squares S = Σ n·(y/n − μ)², the
    beta-binomial model (Var y = n·π(1−π)·[1 + (n−1)ρ], ρ = 1/(α+β+1)) gives
    E[S] = π(1−π)·[(k−1)(1−ρ) + ρ·(N − Σn²/N)]. So

        ρ̂ = (S / (μ(1−μ)) − (k−1)) / (N − Σn²/N − (k−1)),
        α+β = 1/ρ̂ − 1,  α = μ(α+β),  β = (1−μ)(α+β).

    ρ̂ ≤ 0 (no more spread than chance) gives an infinitely strong prior: every estimate is μ.
    μ of 0 or 1 likewise. Units with n = 0 carry no information and are ignored. None when no
    unit has an interview.
    """
    data = [(int(y), int(n)) for y, n in units if n > 0]
    if not data:
        return None
    total = sum(n for _, n in data)
    mean = sum(y for y, _ in data) / total
    k = len(data)
    spread = total - sum(n * n for _, n in data) / total - (k - 1)
    if mean in (0.0, 1.0) or k < 2 or spread <= 0:
        return BetaPrior(math.inf, math.inf, mean, 0.0)
    s = sum(n * (y / n - mean) ** 2 for y, n in data)
    rho = (s / (mean * (1 - mean)) - (k - 1)) / spread
    if rho <= 0:
        return BetaPrior(math.inf, math.inf, mean, 0.0)
    rho = min(rho, 0.999999)
    strength = 1 / rho - 1
    return BetaPrior(mean * strength, (1 - mean) * strength, mean, rho)


# ---------------------------------------------------------------------------
# Funnel plot
# ---------------------------------------------------------------------------


def funnel_limits(overall: float, n: int, z: float) -> tuple[float, float]:
    """Control limits at sample size n around the overall proportion (Spiegelhalter 2005,
    normal approximation to the binomial): overall ± z·sqrt(overall(1−overall)/n), kept in [0, 1]."""
    if n <= 0:
        return 0.0, 1.0
    half = z * math.sqrt(overall * (1 - overall) / n)
    return max(0.0, overall - half), min(1.0, overall + half)


def funnel_position(rate: float, overall: float, n: int) -> str:
    """'high99' / 'high95' / 'within' / 'low95' / 'low99' (99 = the 99.8% limits)."""
    lo95, hi95 = funnel_limits(overall, n, Z95)
    lo99, hi99 = funnel_limits(overall, n, Z998)
    if rate > hi99:
        return "high99"
    if rate < lo99:
        return "low99"
    if rate > hi95:
        return "high95"
    if rate < lo95:
        return "low95"
    return "within"


def funnel_curve(overall: float, n_max: int, points: int = 60) -> list[dict]:
    """The limit lines for the chart, from n = 1 to n_max."""
    if n_max < 1:
        return []
    points = max(points, 2)
    ns = sorted({max(1, round(1 + (n_max - 1) * (i / (points - 1)) ** 2)) for i in range(points)})
    rows = []
    for n in ns:
        lo95, hi95 = funnel_limits(overall, n, Z95)
        lo99, hi99 = funnel_limits(overall, n, Z998)
        rows.append({"n": n, "lo95": lo95, "hi95": hi95, "lo99": lo99, "hi99": hi99})
    return rows


# ---------------------------------------------------------------------------
# Composite score
# ---------------------------------------------------------------------------


def composite(values: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Weighted mean of the indicators (each on 0–100) that have a value; the weights of
    missing ones are shared out among the rest. None when none has a value."""
    present = [(weights[k], values[k]) for k in weights if values.get(k) is not None and weights[k] > 0]
    total = sum(w for w, _ in present)
    if not total:
        return None
    return sum(w * v for w, v in present) / total
