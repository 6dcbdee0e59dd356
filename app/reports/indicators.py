"""The indicators of any unit (team, institution, county, city) over any period (a month, or
a rolling window of N months ending at a month): one aggregate query, then the rates with
their Wilson intervals. Every screen, export and API reads them from here.

Counted over completed interviews (AAPOR I) of the period's rounds:

| indicator | successes / denominator |
|---|---|
| 签约知晓率 aware | knows they have a contract / completes |
| 家医知晓率 knows_doctor | knows the doctor's name or phone / completes |
| 履约率 fulfilment | reported services ≥ the prorated standard / completes owed a count (standard ≥ 1) |
| 平均服务次数 mean_services | mean reported count (not a proportion: no interval) |
| 服务实效 effect | 很有帮助 + 有帮助 / valid answers (说不清 left out) |
| 满意率 satisfaction | 非常满意 + 满意 / valid answers |
| 满意度得分 score | mean of the level scores (default 100/75/50/25/0) |
| 续约意愿率 renew | would renew / answered (还没想好 counts as answered, not renewing) |
| 问题数 flagged | completes with at least one flag |
| 综合得分 composite | weighted mean of the rates above on 0–100 (weights configurable) |
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from app.models import Case, County, Institution, Response, Round, Team
from app.reports.metrics import composite, wilson

LEVEL_LABELS = {"team": "团队", "institution": "机构", "county": "县市区", "city": "全市"}

# proportions that can be ranked, in display order
RATES = {
    "satisfaction": "满意率",
    "aware": "签约知晓率",
    "knows_doctor": "家医知晓率",
    "fulfilment": "履约率",
    "effect": "服务实效",
    "renew": "续约意愿率",
}
DEFAULT_SCORES = (100, 75, 50, 25, 0)  # 非常满意 … 非常不满意
DEFAULT_WEIGHTS = {"score": 0.4, "aware": 0.15, "knows_doctor": 0.15, "fulfilment": 0.15, "effect": 0.15}


@dataclass(frozen=True)
class Rate:
    successes: int
    n: int

    @property
    def value(self) -> float | None:
        return self.successes / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.successes, self.n)


@dataclass
class Counts:
    """The sums one aggregate query returns for a unit."""

    completes: int = 0
    aware: int = 0
    knows_doctor: int = 0
    owed: int = 0
    met: int = 0
    services_sum: int = 0
    services_n: int = 0
    effect_top2: int = 0
    effect_n: int = 0
    sat_top2: int = 0
    sat_n: int = 0
    score_sum: float = 0.0
    renew_yes: int = 0
    renew_n: int = 0
    flagged: int = 0

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


# each rate: (successes, denominator) fields of Counts
_RATE_FIELDS = {
    "aware": ("aware", "completes"),
    "knows_doctor": ("knows_doctor", "completes"),
    "fulfilment": ("met", "owed"),
    "effect": ("effect_top2", "effect_n"),
    "satisfaction": ("sat_top2", "sat_n"),
    "renew": ("renew_yes", "renew_n"),
}


@dataclass
class Unit:
    level: str
    key: int | None  # team / institution / county id; None for the city
    name: str
    parent: str = ""  # e.g. "岳阳县 · 新墙镇卫生院" for a team
    county_id: int | None = None
    institution_id: int | None = None
    counts: Counts = field(default_factory=Counts)

    @property
    def n(self) -> int:
        return self.counts.completes

    def rate(self, code: str) -> Rate:
        successes, n = _RATE_FIELDS[code]
        return Rate(getattr(self.counts, successes), getattr(self.counts, n))

    @property
    def mean_services(self) -> float | None:
        return self.counts.services_sum / self.counts.services_n if self.counts.services_n else None

    @property
    def score(self) -> float | None:
        return self.counts.score_sum / self.counts.sat_n if self.counts.sat_n else None

    def composite(self, weights: Mapping[str, float]) -> float | None:
        values = {code: (self.rate(code).value * 100 if self.rate(code).value is not None else None)
                  for code in RATES}
        values["score"] = self.score
        return composite(values, weights)


def _level_columns(level: str):
    if level == "team":
        return Case.team_id
    if level == "institution":
        return Case.institution_id
    if level == "county":
        return Round.county_id
    if level == "city":
        return literal(0)
    raise ValueError(f"unknown level: {level}")


def _score_expr(scores: tuple[float, ...]):
    return case(
        (Response.satisfaction == 5, scores[0]),
        (Response.satisfaction == 4, scores[1]),
        (Response.satisfaction == 3, scores[2]),
        (Response.satisfaction == 2, scores[3]),
        (Response.satisfaction == 1, scores[4]),
        else_=None,
    )


def aggregate(
    session: Session,
    level: str,
    months: Iterable[str],
    *,
    county_id: int | None = None,
    institution_id: int | None = None,
    scores: tuple[float, ...] = DEFAULT_SCORES,
    by_month: bool = False,
    only_units: Iterable[int] | None = None,
) -> dict:
    """{unit key: Counts} (or {(unit key, month): Counts} with ``by_month``) for the completed
    interviews of the months' rounds, optionally within one county or institution; every unit
    with an active case in the period has an entry, with zero counts if nobody completed. With
    ``only_units``, every other unit is counted in one bucket under the key None (so totals
    stay whole while a chart needs only a few units)."""
    key = _level_columns(level)
    if only_units is not None:
        key = case((key.in_(list(only_units) or [-1]), key), else_=None)
    key = key.label("unit")
    columns = [key]
    if by_month:
        columns.append(Round.month)
    stmt = (
        select(
            *columns,
            func.count(Response.id),
            func.count().filter(Response.aware.is_(True)),
            func.count().filter(Response.knows_doctor.is_(True)),
            func.count().filter(Response.expected_services >= 1),
            func.count().filter(Response.expected_services >= 1, Response.service_count >= Response.expected_services),
            func.coalesce(func.sum(Response.service_count), 0),
            func.count(Response.service_count),
            func.count().filter(Response.effect >= 4),
            func.count(Response.effect),
            func.count().filter(Response.satisfaction >= 4),
            func.count(Response.satisfaction),
            func.coalesce(func.sum(_score_expr(scores)), 0),
            func.count().filter(Response.renew.is_(True), Response.renew_answered.is_(True)),
            func.count().filter(Response.renew_answered.is_(True)),
            func.count().filter(Response.flags.is_not(None)),
        )
        # every active case (primaries and activated backups), its completed interview if any:
        # one pass gives the counts and which units had cases at all
        .select_from(Case)
        .join(Round, Round.id == Case.round_id)
        .outerjoin(Response, and_(Response.case_id == Case.id, Response.status == "complete"))
        .where(Case.status != "reserve", Round.month.in_(list(months)))
        .group_by(*[c for c in columns])
    )
    if county_id is not None:
        stmt = stmt.where(Round.county_id == county_id)
    if institution_id is not None:
        stmt = stmt.where(Case.institution_id == institution_id)
    result = {}
    for row in session.execute(stmt):
        if by_month:
            unit, month, *values = row
            result[(unit, month)] = Counts(*values)
        else:
            unit, *values = row
            result[unit] = Counts(*values)
    return result


def units_of(
    session: Session, level: str, *, county_id: int | None = None, institution_id: int | None = None
) -> dict[int | None, Unit]:
    """Every unit of the level (within the county/institution), with names, so units with no
    interview appear too."""
    if level == "city":
        return {0: Unit("city", None, "全市")}
    if level == "county":
        stmt = select(County.id, County.name)
        if county_id is not None:
            stmt = stmt.where(County.id == county_id)
        return {cid: Unit("county", cid, name, county_id=cid) for cid, name in session.execute(stmt.order_by(County.code))}
    if level == "institution":
        stmt = select(Institution.id, Institution.name, County.id, County.name).join(County)
        if county_id is not None:
            stmt = stmt.where(Institution.county_id == county_id)
        if institution_id is not None:
            stmt = stmt.where(Institution.id == institution_id)
        return {
            iid: Unit("institution", iid, name, parent=cname, county_id=cid, institution_id=iid)
            for iid, name, cid, cname in session.execute(stmt.order_by(County.code, Institution.name))
        }
    stmt = (
        select(Team.id, Team.name, Institution.id, Institution.name, County.id, County.name)
        .join(Institution, Institution.id == Team.institution_id)
        .join(County, County.id == Institution.county_id)
    )
    if county_id is not None:
        stmt = stmt.where(Institution.county_id == county_id)
    if institution_id is not None:
        # a team moved to another institution since keeps its past cases here (Case.institution_id)
        drawn_here = select(Case.team_id).where(Case.institution_id == institution_id).distinct()
        stmt = stmt.where(or_(Team.institution_id == institution_id, Team.id.in_(drawn_here)))
    return {
        tid: Unit("team", tid, name, parent=f"{cname} · {iname}", county_id=cid, institution_id=iid)
        for tid, name, iid, iname, cid, cname in session.execute(stmt.order_by(County.code, Institution.name, Team.name))
    }


def unit_indicators(
    session: Session,
    level: str,
    months: Iterable[str],
    *,
    county_id: int | None = None,
    institution_id: int | None = None,
    scores: tuple[float, ...] = DEFAULT_SCORES,
    only_active: bool = True,
    units: Mapping[int | None, Unit] | None = None,
) -> list[Unit]:
    """The units of a level with their period's counts. ``only_active`` drops units with no
    case in the period (a team with nobody drawn is not "0 of 0", it is absent). ``units``:
    the level's units as ``units_of`` gives them, when the caller already has them (they are
    not changed: each period gets units of its own)."""
    months = list(months)
    if units is None:
        units = units_of(session, level, county_id=county_id, institution_id=institution_id)
    counted = aggregate(session, level, months, county_id=county_id, institution_id=institution_id, scores=scores)
    if only_active and level != "city":
        return [replace(u, counts=counted[k]) for k, u in units.items() if k in counted]
    return [replace(u, counts=counted.get(k) or Counts()) for k, u in units.items()]
