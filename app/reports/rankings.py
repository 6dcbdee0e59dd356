"""Fair rankings: units ranked on the empirical-Bayes estimate of a rate, each shown with n,
the observed rate and its Wilson interval, the change against the previous period, and its
place on the funnel plot. Units under the minimum n are listed apart (样本不足), not ranked.

The previous period is the one of the same length just before (a month: the month before; a
3-month window ending in June: the window ending in March), so the two do not overlap.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.orm import Session

from app.reports.indicators import DEFAULT_SCORES, DEFAULT_WEIGHTS, RATES, Rate, Unit, unit_indicators, units_of
from app.core.clock import months_of
from app.reports.metrics import BetaPrior, fit_beta_binomial, funnel_curve, funnel_position

DEFAULT_MIN_N = {"team": 20, "institution": 10, "county": 30}
# the levels a ranking can be asked for (the page, the API and `flask report rankings`)
RANK_LEVELS = ("team", "institution", "county")
# the window (months) used when none is asked for: a team gets 2–3 interviews a month, so a
# year; institutions and counties the month itself
DEFAULT_WINDOW = {"team": 12, "institution": 1, "county": 1}
RECOMMENDED_WINDOW = {"team": 12, "institution": 3, "county": 1}
MAX_WINDOW = 12
MONTH_PATTERN = re.compile(r"^(20\d\d)-(0[1-9]|1[0-2])$")
POSITION_LABELS = {
    "high99": "显著偏高（99.8%）",
    "high95": "偏高（95%）",
    "within": "正常范围",
    "low95": "偏低（95%）",
    "low99": "显著偏低（99.8%）",
}


@dataclass
class RankRow:
    """One unit of a ranking. The Wilson interval and the composite are worked out when first
    read: a province's team ranking has 12,000 rows and a page shows 100 of them."""

    unit: Unit
    rank: int | None
    successes: int
    n: int  # the rate's denominator
    observed: float | None
    adjusted: float | None  # empirical-Bayes
    previous: float | None  # adjusted, previous period
    previous_n: int
    change: float | None  # adjusted minus previous adjusted
    position: str | None
    weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_WEIGHTS, repr=False)

    @property
    def completes(self) -> int:
        return self.unit.n

    @cached_property
    def _interval(self) -> tuple[float, float] | None:
        return Rate(self.successes, self.n).interval

    @property
    def low(self) -> float | None:
        return self._interval[0] if self._interval else None

    @property
    def high(self) -> float | None:
        return self._interval[1] if self._interval else None

    @cached_property
    def composite(self) -> float | None:
        return self.unit.composite(self.weights)


@dataclass
class Ranking:
    level: str
    indicator: str
    month: str
    window: int
    months: list[str]
    previous_months: list[str]
    min_n: int
    overall: float | None
    prior: BetaPrior | None
    ranked: list[RankRow] = field(default_factory=list)
    insufficient: list[RankRow] = field(default_factory=list)
    funnel: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return RATES[self.indicator]


def _rows(units: list[Unit], indicator: str, prior: BetaPrior | None, overall: float | None, weights) -> list[RankRow]:
    rows = []
    for unit in units:
        rate = unit.rate(indicator)
        successes, n, observed = rate.successes, rate.n, rate.value
        rows.append(RankRow(
            unit=unit, rank=None, successes=successes, n=n, observed=observed,
            adjusted=prior.posterior_mean(successes, n) if prior is not None and n else None,
            previous=None, previous_n=0, change=None,
            position=funnel_position(observed, overall, n) if n and overall is not None else None,
            weights=weights,
        ))
    return rows


def build_ranking(
    session: Session,
    level: str,
    month: str,
    *,
    window: int = 1,
    indicator: str = "satisfaction",
    county_id: int | None = None,
    min_n: int | None = None,
    scores: tuple[float, ...] = DEFAULT_SCORES,
    weights=None,
) -> Ranking:
    if indicator not in RATES:
        raise ValueError(f"unknown indicator: {indicator}")
    weights = weights or DEFAULT_WEIGHTS
    min_n = DEFAULT_MIN_N.get(level, 10) if min_n is None else min_n
    months = months_of(month, window)
    previous_months = months_of(months_of(month, window + 1)[0], window)
    names = units_of(session, level, county_id=county_id)  # read once for both periods
    units = unit_indicators(session, level, months, county_id=county_id, scores=scores, units=names)
    prior = fit_beta_binomial((u.rate(indicator).successes, u.rate(indicator).n) for u in units)
    overall = prior.mean if prior else None
    rows = _rows(units, indicator, prior, overall, weights)

    before = {u.key: u for u in unit_indicators(session, level, previous_months, county_id=county_id, scores=scores,
                                                units=names)}
    prior_before = fit_beta_binomial((u.rate(indicator).successes, u.rate(indicator).n) for u in before.values())
    for row in rows:
        old = before.get(row.unit.key)
        if old is not None and prior_before is not None:
            rate = old.rate(indicator)
            if rate.n:
                row.previous = prior_before.posterior_mean(rate.successes, rate.n)
                row.previous_n = rate.n
                if row.adjusted is not None:
                    row.change = row.adjusted - row.previous

    ranked = [r for r in rows if r.completes >= min_n and r.adjusted is not None]
    insufficient = [r for r in rows if not (r.completes >= min_n and r.adjusted is not None)]
    # ties share a rank (1, 2, 2, 4); equal estimates are ordered by n, then name, for display
    ranked.sort(key=lambda r: (-round(r.adjusted, 12), -r.n, r.unit.name))
    previous_value, previous_rank = None, 0
    for position, row in enumerate(ranked, start=1):
        value = round(row.adjusted, 12)
        row.rank = previous_rank if value == previous_value else position
        previous_value, previous_rank = value, row.rank
    insufficient.sort(key=lambda r: (-r.completes, r.unit.name))
    result = Ranking(level, indicator, month, window, months, previous_months, min_n, overall, prior, ranked,
                     insufficient)
    if overall is not None and rows:
        result.funnel = funnel_curve(overall, max(r.n for r in rows))
    return result
