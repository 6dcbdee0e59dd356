"""Indicators (app/reports/indicators.py) and fair rankings (app/reports/rankings.py) on
hand-built months whose figures are worked out in the tests. Runs on SQLite and, with
TEST_DATABASE_URL, on PostgreSQL.

Definitions: ../shared/design/domain.md ("Indicators", "Ranking small units fairly") and the
README ("Metrics and rankings").
"""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from sqlalchemy import select, update

from app.extensions import db
from app.models import Case, Response
from app.reports.indicators import DEFAULT_SCORES, DEFAULT_WEIGHTS, RATES, aggregate, unit_indicators
from app.core.clock import months_of
from app.reports.rankings import DEFAULT_MIN_N, build_ranking
from tests.reports_support import add_results

Z95 = 1.959964
Z998 = 3.090232


# ---------------------------------------------------------------------------
# helpers: answers, and the documented estimator done in exact fractions
# ---------------------------------------------------------------------------


def sat(yes: int, total: int) -> list[dict]:
    """``total`` completes of which ``yes`` are 非常满意 (5) and the rest 不满意 (2)."""
    return [{"satisfaction": 5}] * yes + [{"satisfaction": 2}] * (total - yes)


def eb(units: list[tuple[int, int]]):
    """μ, ρ̂ and the posterior means by the README's formula, in fractions:
    N = Σn, μ = Σy/N, S = Σn(y/n − μ)², ρ̂ = (S/(μ(1−μ)) − (k−1)) / (N − Σn²/N − (k−1)),
    α+β = 1/ρ̂ − 1, estimate (y + μ(α+β)) / (n + α+β); ρ̂ ≤ 0 or μ ∈ {0, 1}: every estimate μ."""
    units = [(y, n) for y, n in units if n]
    total = sum(n for _, n in units)
    mu = Fraction(sum(y for y, _ in units), total)
    s = sum(n * (Fraction(y, n) - mu) ** 2 for y, n in units)
    spread = total - Fraction(sum(n * n for _, n in units), total) - (len(units) - 1)
    if mu in (0, 1) or len(units) < 2:
        return mu, None, lambda y, n: mu
    rho = (s / (mu * (1 - mu)) - (len(units) - 1)) / spread
    if rho <= 0:
        return mu, rho, lambda y, n: mu
    strength = 1 / rho - 1
    return mu, rho, lambda y, n: (y + mu * strength) / (n + strength)


def by_name(rows):
    return {r.unit.name: r for r in rows}


def funnel_label(rate: float, overall: float, n: int) -> str:
    half95 = Z95 * math.sqrt(overall * (1 - overall) / n)
    half99 = Z998 * math.sqrt(overall * (1 - overall) / n)
    if rate > min(1.0, overall + half99):
        return "high99"
    if rate < max(0.0, overall - half99):
        return "low99"
    if rate > min(1.0, overall + half95):
        return "high95"
    if rate < max(0.0, overall - half95):
        return "low95"
    return "within"


# ---------------------------------------------------------------------------
# months
# ---------------------------------------------------------------------------


def test_months_of():
    assert months_of("2026-06", 1) == ["2026-06"]
    assert months_of("2026-06", 3) == ["2026-04", "2026-05", "2026-06"]
    assert months_of("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]
    assert months_of("2026-01", 12) == [
        "2025-02", "2025-03", "2025-04", "2025-05", "2025-06", "2025-07",
        "2025-08", "2025-09", "2025-10", "2025-11", "2025-12", "2026-01",
    ]
    assert months_of("2026-12", 2) == ["2026-11", "2026-12"]


def test_constants():
    assert DEFAULT_SCORES == (100, 75, 50, 25, 0)
    assert DEFAULT_WEIGHTS == {"score": 0.4, "aware": 0.15, "knows_doctor": 0.15, "fulfilment": 0.15, "effect": 0.15}
    assert sum(DEFAULT_WEIGHTS.values()) == pytest.approx(1.0)
    assert set(RATES) == {"satisfaction", "aware", "knows_doctor", "fulfilment", "effect", "renew"}
    assert DEFAULT_MIN_N == {"team": 20, "institution": 10, "county": 30}


# ---------------------------------------------------------------------------
# indicators per unit
# ---------------------------------------------------------------------------

TEAM_A = [
    # 1: the defaults: aware, knows, 2 services of 1 owed, effect 4, 非常满意, would renew
    {},
    # 2: unaware of the contract, no service of 1 owed, effect 说不清 (None), 一般, 不愿意续约
    {"aware": False, "knows_doctor": False, "service_count": 0, "expected_services": 1, "effect": None,
     "satisfaction": 3, "renew": False, "renew_answered": True, "flags": "unaware,no_service"},
    # 3: does not know the doctor, 1 service of 2 owed, 很有帮助, 满意, renewal not asked
    {"knows_doctor": False, "service_count": 1, "expected_services": 2, "effect": 5, "satisfaction": 4,
     "renew": None, "renew_answered": False},
    # 4: 3 services, no fixed count owed, 没什么帮助 (2), 不满意, 还没想好 (renew None but answered), two flags
    {"service_count": 3, "expected_services": 0, "effect": 2, "satisfaction": 2, "renew": None,
     "renew_answered": True, "flags": "low_services,unsatisfied"},
    # 5: count unknown, owed unknown, effect 3, 非常不满意, renew by default
    {"service_count": None, "expected_services": None, "effect": 3, "satisfaction": 1, "flags": "wants_contact"},
    # 6: 4 of 4, 完全没有帮助 (1), satisfaction not answered
    {"service_count": 4, "expected_services": 4, "effect": 1, "satisfaction": None, "renew": True},
]


@pytest.fixture
def indicator_data(county, make_team):
    team_a = make_team(county, "A镇卫生院", "A1团队")
    team_b = make_team(county, "A镇卫生院", "A2团队")
    team_c = make_team(county, "B镇卫生院", "B1团队")
    idle = make_team(county, "B镇卫生院", "B2团队")  # nobody drawn: absent
    add_results(county, team_a, "2026-06", TEAM_A, outcomes=["refusal", "no_answer", "moved"])
    add_results(county, team_b, "2026-06", [{}, {}])
    add_results(county, team_c, "2026-06", [{"satisfaction": 4, "aware": False}])
    # another month: not in June's figures
    add_results(county, team_a, "2026-05", [{}] * 4)
    return team_a, team_b, team_c, idle


def test_indicator_counts_per_team(indicator_data):
    team_a, team_b, team_c, idle = indicator_data
    units = {u.key: u for u in unit_indicators(db.session, "team", ["2026-06"])}
    assert set(units) == {team_a.id, team_b.id, team_c.id}  # the idle team is absent
    a = units[team_a.id]
    c = a.counts
    # completes: the 6 interviews; the refusal, no-answer and moved cases are not completes
    assert a.n == c.completes == 6
    # aware: all but #2 -> 5/6; knows the doctor: #1, #4, #5, #6 -> 4/6
    assert (c.aware, c.knows_doctor) == (5, 4)
    assert (a.rate("aware").successes, a.rate("aware").n) == (5, 6)
    assert (a.rate("knows_doctor").successes, a.rate("knows_doctor").n) == (4, 6)
    # owed a count (expected ≥ 1): #1 (1), #2 (1), #3 (2), #6 (4) -> 4; met: #1 2≥1, #6 4≥4 -> 2
    assert (c.owed, c.met) == (4, 2)
    assert a.rate("fulfilment").value == pytest.approx(0.5)
    # services: 2 + 0 + 1 + 3 + 4 = 10 over the 5 answered (#5 unknown) -> 2.0
    assert (c.services_sum, c.services_n) == (10, 5)
    assert a.mean_services == pytest.approx(2.0)
    # effect: answered by #1, #3, #4, #5, #6 (4, 5, 2, 3, 1) -> top-2 = 2 of 5
    assert (c.effect_top2, c.effect_n) == (2, 5)
    # satisfaction: #1..#5 answered (5, 3, 4, 2, 1) -> top-2 = 2 of 5
    assert (c.sat_top2, c.sat_n) == (2, 5)
    # score: 100 + 50 + 75 + 25 + 0 = 250 over 5 -> 50
    assert c.score_sum == 250
    assert a.score == pytest.approx(50.0)
    # renew: answered by #1, #2, #4 (还没想好), #5, #6 (#3 not asked); yes: #1, #5, #6 -> 3/5
    assert (c.renew_yes, c.renew_n) == (3, 5)
    # flagged: #2, #4, #5
    assert c.flagged == 3
    # Wilson interval beside each rate: 5/6
    low, high = a.rate("aware").interval
    p, n, z2 = 5 / 6, 6, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-5)
    # composite (default weights): score 50, aware 83.33, knows 66.67, fulfilment 50, effect 40:
    # 0.4·50 + 0.15·(83.333 + 66.667 + 50 + 40) = 20 + 0.15·240 = 56
    assert a.composite(DEFAULT_WEIGHTS) == pytest.approx(56.0)
    # other weights: renew alone -> 60; a weight on an indicator with no data is shared out
    assert a.composite({"renew": 1.0}) == pytest.approx(60.0)
    assert a.composite({"renew": 0.5, "satisfaction": 0.5}) == pytest.approx(50.0)  # (60 + 40)/2
    # the ranking row carries the same composite
    ranking = build_ranking(db.session, "team", "2026-06", min_n=1)
    assert by_name(ranking.ranked)["A1团队"].composite == pytest.approx(56.0)

    b = units[team_b.id]
    assert b.n == 2 and b.counts.met == 2 and b.rate("satisfaction").value == 1.0 and b.score == 100.0
    assert b.counts.flagged == 0
    # one response: 满意 (75), unaware
    one = units[team_c.id]
    assert one.n == 1
    assert one.rate("satisfaction").value == 1.0 and one.score == 75.0
    assert one.rate("aware").value == 0.0
    assert one.rate("aware").interval[0] == pytest.approx(0.0, abs=1e-12)
    assert one.rate("aware").interval[1] == pytest.approx(Z95 * Z95 / (1 + Z95 * Z95), abs=1e-5)


def test_indicator_counts_per_institution_county_city(indicator_data, county):
    team_a, team_b, team_c, idle = indicator_data
    insts = {u.key: u for u in unit_indicators(db.session, "institution", ["2026-06"])}
    a = insts[team_a.institution_id]
    # A镇 = team A + team B (2 default interviews)
    assert a.n == 8
    c = a.counts
    assert (c.aware, c.knows_doctor, c.owed, c.met) == (7, 6, 6, 4)
    assert (c.services_sum, c.services_n) == (14, 7)
    assert (c.effect_top2, c.effect_n, c.sat_top2, c.sat_n) == (4, 7, 4, 7)
    assert a.score == pytest.approx(450 / 7)  # (250 + 100 + 100) / 7
    assert (c.renew_yes, c.renew_n, c.flagged) == (5, 7, 3)
    assert insts[team_c.institution_id].n == 1

    (county_unit,) = unit_indicators(db.session, "county", ["2026-06"])
    assert county_unit.key == county.id and county_unit.n == 9
    assert county_unit.counts.sat_top2 == 5 and county_unit.counts.sat_n == 8
    (city,) = unit_indicators(db.session, "city", ["2026-06"])
    assert city.key is None and city.n == 9 and city.counts.aware == 7
    # May alone: team A's four default interviews
    (may,) = unit_indicators(db.session, "city", ["2026-05"])
    assert may.n == 4
    # both months together
    (both,) = unit_indicators(db.session, "city", ["2026-05", "2026-06"])
    assert both.n == 13 and both.counts.sat_top2 == 9


def test_only_completed_interviews_count(indicator_data, county):
    team_a, team_b, *_ = indicator_data
    # turn one of team B's two completes into a partial: it no longer counts anywhere
    response_id = db.session.scalar(
        select(Response.id).join(Case, Case.id == Response.case_id).where(Case.team_id == team_b.id)
        .order_by(Response.id).limit(1))
    db.session.execute(update(Response).where(Response.id == response_id).values(status="partial"))
    db.session.commit()
    units = {u.key: u for u in unit_indicators(db.session, "team", ["2026-06"])}
    assert units[team_b.id].n == 1 and units[team_b.id].counts.sat_n == 1
    assert units[team_a.id].n == 6


def test_aggregate_by_month_and_institution(indicator_data):
    team_a, team_b, team_c, idle = indicator_data
    counts = aggregate(db.session, "team", ["2026-05", "2026-06"], by_month=True)
    assert {key: c.completes for key, c in counts.items()} == {
        (team_a.id, "2026-05"): 4, (team_a.id, "2026-06"): 6, (team_b.id, "2026-06"): 2, (team_c.id, "2026-06"): 1,
    }
    only_a = aggregate(db.session, "team", ["2026-06"], institution_id=team_a.institution_id)
    assert set(only_a) == {team_a.id, team_b.id}
    units = unit_indicators(db.session, "team", ["2026-06"], institution_id=team_c.institution_id)
    assert [u.key for u in units] == [team_c.id]
    # with only_active=False the idle team appears, at n = 0
    units = {u.key: u for u in unit_indicators(db.session, "team", ["2026-06"], institution_id=team_c.institution_id,
                                               only_active=False)}
    assert set(units) == {team_c.id, idle.id} and units[idle.id].n == 0
    assert units[idle.id].rate("satisfaction").value is None and units[idle.id].score is None
    assert units[idle.id].mean_services is None and units[idle.id].composite(DEFAULT_WEIGHTS) is None


def test_custom_scores(indicator_data):
    team_a, *_ = indicator_data
    scores = (100.0, 80.0, 60.0, 40.0, 0.0)  # as ReportSettings reads them: floats
    units = {u.key: u for u in unit_indicators(db.session, "team", ["2026-06"], scores=scores)}
    # team A answered 5, 3, 4, 2, 1 -> 100 + 60 + 80 + 40 + 0 = 280 over 5 = 56
    assert units[team_a.id].score == pytest.approx(56.0)
    # composite: 0.4·56 + 0.15·240 = 58.4
    assert units[team_a.id].composite(DEFAULT_WEIGHTS) == pytest.approx(58.4)


def test_unknown_level_and_indicator(app):
    with pytest.raises(ValueError):
        unit_indicators(db.session, "province", ["2026-06"])
    with pytest.raises(ValueError):
        build_ranking(db.session, "institution", "2026-06", indicator="happiness")


# ---------------------------------------------------------------------------
# ranking: ties, one response, n = 0, all satisfied, min n
# ---------------------------------------------------------------------------


@pytest.fixture
def six_institutions(county, make_team):
    teams = {name: make_team(county, name, name + "团队") for name in
             ("A镇卫生院", "B镇卫生院", "C镇卫生院", "D镇卫生院", "E镇卫生院", "F镇卫生院")}
    add_results(county, teams["A镇卫生院"], "2026-06", sat(9, 10))
    add_results(county, teams["B镇卫生院"], "2026-06", sat(9, 10))  # the same counts as A
    add_results(county, teams["C镇卫生院"], "2026-06", sat(20, 20))  # all satisfied
    add_results(county, teams["D镇卫生院"], "2026-06", sat(1, 1))  # one response
    add_results(county, teams["E镇卫生院"], "2026-06", [], outcomes=["refusal", "no_answer", "moved"])  # n = 0
    add_results(county, teams["F镇卫生院"], "2026-06", sat(6, 12))
    return teams


def test_ranking_ties_small_and_empty_units(six_institutions):
    ranking = build_ranking(db.session, "institution", "2026-06")
    # the prior comes from A 9/10, B 9/10, C 20/20, D 1/1, F 6/12 (E has no interview):
    # N = 53, Σy = 45, μ = 45/53 = 0.849057
    # S = 2·10·(9/10 − 45/53)² + 20·(1 − 45/53)² + 1·(1 − 45/53)² + 12·(1/2 − 45/53)² = 528/265
    # N − Σn²/N − (k−1) = 53 − (100 + 100 + 400 + 1 + 144)/53 − 4 = 2064/53 − 4 = 1852/53
    # ρ̂ = (528/265 / (45/53 · 8/53) − 4) / (1852/53) = 22949/69450 = 0.330439
    mu, rho, estimate = eb([(9, 10), (9, 10), (20, 20), (1, 1), (6, 12)])
    assert mu == Fraction(45, 53)
    assert rho == Fraction(22949, 69450)
    strength = 1 / rho - 1  # α + β = 46501/22949 = 2.026276
    assert float(strength) == pytest.approx(2.026276, abs=1e-6)
    assert ranking.overall == pytest.approx(45 / 53)
    assert ranking.prior.rho == pytest.approx(float(rho))
    assert ranking.prior.alpha == pytest.approx(45 / 53 * 2.026276, abs=1e-5)
    assert ranking.prior.beta == pytest.approx(8 / 53 * 2.026276, abs=1e-5)
    assert ranking.min_n == 10 and ranking.months == ["2026-06"] and ranking.previous_months == ["2026-05"]

    # estimates (y + α)/(n + α + β) = (y + 1.720423)/(n + 2.026276)
    expected = {"A镇卫生院": 0.891417, "B镇卫生院": 0.891417, "C镇卫生院": 0.986114, "D镇卫生院": 0.898934,
                "F镇卫生院": 0.550426}
    for name, value in expected.items():
        y, n = {"A镇卫生院": (9, 10), "B镇卫生院": (9, 10), "C镇卫生院": (20, 20), "D镇卫生院": (1, 1),
                "F镇卫生院": (6, 12)}[name]
        assert float(estimate(y, n)) == pytest.approx(value, abs=1e-6)

    # institutions need 10 interviews: D (1) and E (0) are apart
    assert [(r.unit.name, r.rank) for r in ranking.ranked] == [
        ("C镇卫生院", 1), ("A镇卫生院", 2), ("B镇卫生院", 2), ("F镇卫生院", 4),
    ]
    assert [r.unit.name for r in ranking.insufficient] == ["D镇卫生院", "E镇卫生院"]
    rows = by_name(ranking.ranked + ranking.insufficient)
    for name, value in expected.items():
        assert rows[name].adjusted == pytest.approx(value, abs=1e-6)
    assert rows["A镇卫生院"].adjusted == rows["B镇卫生院"].adjusted

    c = rows["C镇卫生院"]
    assert (c.successes, c.n, c.completes, c.observed) == (20, 20, 20, 1.0)
    assert c.high == pytest.approx(1.0, abs=1e-12)
    assert c.low == pytest.approx(1 / (1 + Z95 * Z95 / 20), abs=1e-5)  # 0.83887
    a = rows["A镇卫生院"]
    assert (round(a.low, 3), round(a.high, 3)) == (0.596, 0.982)

    d = rows["D镇卫生院"]
    assert (d.successes, d.n, d.observed, d.rank) == (1, 1, 1.0, None)
    assert d.low == pytest.approx(1 / (1 + Z95 * Z95), abs=1e-5)

    e = rows["E镇卫生院"]
    assert (e.n, e.completes, e.successes, e.rank) == (0, 0, 0, None)
    assert (e.observed, e.low, e.high, e.adjusted, e.position, e.change) == (None,) * 6

    # funnel around μ = 0.849057: F 0.5 at n = 12: 99.8% lower 0.849057 − 3.090232·0.103344 = 0.529700 -> low99;
    # C 1.0 at n = 20: 95% upper 0.849057 + 0.156895 > 1, kept at 1 -> within
    assert rows["F镇卫生院"].position == "low99"
    assert rows["C镇卫生院"].position == "within"
    for name, (y, n) in {"A镇卫生院": (9, 10), "C镇卫生院": (20, 20), "D镇卫生院": (1, 1), "F镇卫生院": (6, 12)}.items():
        assert rows[name].position == funnel_label(y / n, 45 / 53, n)
    assert ranking.funnel[0]["n"] == 1 and ranking.funnel[-1]["n"] == 20


def test_ranking_custom_min_n(six_institutions):
    # min n 1: D's one interview is enough; E (n = 0) never is. Ties: A and B share 3, next is 5
    ranking = build_ranking(db.session, "institution", "2026-06", min_n=1)
    assert [(r.unit.name, r.rank) for r in ranking.ranked] == [
        ("C镇卫生院", 1), ("D镇卫生院", 2), ("A镇卫生院", 3), ("B镇卫生院", 3), ("F镇卫生院", 5),
    ]
    assert [r.unit.name for r in ranking.insufficient] == ["E镇卫生院"]
    # min n 11: only C (20) and F (12); the rest apart, most interviews first, then by name
    ranking = build_ranking(db.session, "institution", "2026-06", min_n=11)
    assert [(r.unit.name, r.rank) for r in ranking.ranked] == [("C镇卫生院", 1), ("F镇卫生院", 2)]
    assert [r.unit.name for r in ranking.insufficient] == ["A镇卫生院", "B镇卫生院", "D镇卫生院", "E镇卫生院"]
    # exactly the minimum is enough
    ranking = build_ranking(db.session, "institution", "2026-06", min_n=12)
    assert [r.unit.name for r in ranking.ranked] == ["C镇卫生院", "F镇卫生院"]
    ranking = build_ranking(db.session, "institution", "2026-06", min_n=13)
    assert [r.unit.name for r in ranking.ranked] == ["C镇卫生院"]


def test_team_default_min_n(county, make_team):
    t19 = make_team(county, "A镇卫生院", "19人团队")
    t20 = make_team(county, "A镇卫生院", "20人团队")
    add_results(county, t19, "2026-06", sat(19, 19))
    add_results(county, t20, "2026-06", sat(10, 20))
    ranking = build_ranking(db.session, "team", "2026-06")
    assert ranking.min_n == 20
    assert [r.unit.name for r in ranking.ranked] == ["20人团队"]
    assert [r.unit.name for r in ranking.insufficient] == ["19人团队"]


def test_min_n_counts_completes_and_a_rate_without_denominator_is_not_ranked(county, make_team):
    owed = make_team(county, "A镇卫生院", "A团队")
    not_owed = make_team(county, "B镇卫生院", "B团队")
    # A: 3 of 4 owed met; B: nobody owed a count (general population)
    add_results(county, owed, "2026-06", [{"service_count": 1, "expected_services": 1}] * 3
                + [{"service_count": 0, "expected_services": 2}])
    add_results(county, not_owed, "2026-06", [{"expected_services": 0}] * 5)
    ranking = build_ranking(db.session, "institution", "2026-06", indicator="fulfilment", min_n=4)
    rows = by_name(ranking.ranked + ranking.insufficient)
    a, b = rows["A镇卫生院"], rows["B镇卫生院"]
    assert (a.successes, a.n, a.completes, a.rank) == (3, 4, 4, 1)
    # one unit with data: the prior is its own rate 3/4
    assert a.adjusted == pytest.approx(0.75)
    # B has 5 completes (≥ 4) but no denominator for 履约率: not ranked
    assert (b.n, b.completes, b.adjusted, b.rank) == (0, 5, None, None)
    assert [r.unit.name for r in ranking.insufficient] == ["B镇卫生院"]


# ---------------------------------------------------------------------------
# ranking key: the empirical-Bayes estimate, not the observed rate
# ---------------------------------------------------------------------------


def test_ranking_follows_the_eb_estimate_not_the_observed_rate(county, make_team):
    big = make_team(county, "大镇卫生院", "大团队")
    small = make_team(county, "小镇卫生院", "小团队")
    half = make_team(county, "中一卫生院", "中一团队")
    three_q = make_team(county, "中二卫生院", "中二团队")
    add_results(county, big, "2026-06", sat(57, 60))  # 95%
    add_results(county, small, "2026-06", sat(3, 3))  # 100%
    add_results(county, half, "2026-06", sat(10, 20))
    add_results(county, three_q, "2026-06", sat(15, 20))
    ranking = build_ranking(db.session, "institution", "2026-06", min_n=1)

    # N = 60 + 3 + 20 + 20 = 103, Σy = 57 + 3 + 10 + 15 = 85, μ = 85/103 = 0.825243
    mu = Fraction(85, 103)
    # S = 60·(57/60 − μ)² + 3·(1 − μ)² + 20·(1/2 − μ)² + 20·(3/4 − μ)² = 1676/515 = 3.254369
    s = 60 * (Fraction(57, 60) - mu) ** 2 + 3 * (1 - mu) ** 2 + 20 * (Fraction(1, 2) - mu) ** 2 \
        + 20 * (Fraction(3, 4) - mu) ** 2
    assert s == Fraction(1676, 515)
    # μ(1−μ) = 85·18/103² = 1530/10609; S/(μ(1−μ)) = 3.254369/0.144217 = 22.565704
    # N − Σn²/N − (k−1) = 103 − (3600 + 9 + 400 + 400)/103 − 3 = 5891/103 = 57.194175
    spread = 103 - Fraction(4409, 103) - 3
    assert spread == Fraction(5891, 103)
    # ρ̂ = (22.565704 − 3)/57.194175 = 0.342093, exactly:
    rho = (s / (mu * (1 - mu)) - 3) / spread
    assert rho == Fraction(7708417, 22533075)  # 0.342093
    strength = 1 / rho - 1  # α + β = 1.923178
    alpha = mu * strength  # 1.587089
    assert float(strength) == pytest.approx(1.923178, abs=1e-6)
    assert float(alpha) == pytest.approx(1.587089, abs=1e-6)
    # big: (57 + 1.587089)/(60 + 1.923178) = 58.587089/61.923178 = 0.946125
    # small: (3 + 1.587089)/(3 + 1.923178) = 4.587089/4.923178 = 0.931733
    big_eb = (57 + alpha) / (60 + strength)
    small_eb = (3 + alpha) / (3 + strength)
    assert float(big_eb) == pytest.approx(0.946125, abs=1e-6)
    assert float(small_eb) == pytest.approx(0.931733, abs=1e-6)

    rows = by_name(ranking.ranked)
    assert rows["小镇卫生院"].observed == 1.0 > rows["大镇卫生院"].observed == 0.95
    assert rows["大镇卫生院"].adjusted == pytest.approx(float(big_eb), abs=1e-9)
    assert rows["小镇卫生院"].adjusted == pytest.approx(float(small_eb), abs=1e-9)
    assert rows["中二卫生院"].adjusted == pytest.approx(float((15 + alpha) / (20 + strength)), abs=1e-9)  # 0.756601
    assert rows["中一卫生院"].adjusted == pytest.approx(float((10 + alpha) / (20 + strength)), abs=1e-9)  # 0.528531
    assert [(r.unit.name, r.rank) for r in ranking.ranked] == [
        ("大镇卫生院", 1), ("小镇卫生院", 2), ("中二卫生院", 3), ("中一卫生院", 4),
    ]


def test_all_equal_rates_tie_at_the_overall_rate(county, make_team):
    # 8/10, 16/20, 4/5: no spread beyond chance (S = 0) -> every estimate is μ = 0.8, all rank 1
    for name, (y, n) in {"A镇卫生院": (8, 10), "B镇卫生院": (16, 20), "C镇卫生院": (4, 5)}.items():
        add_results(county, make_team(county, name, name + "团队"), "2026-06", sat(y, n))
    ranking = build_ranking(db.session, "institution", "2026-06", min_n=1)
    assert [(r.unit.name, r.rank) for r in ranking.ranked] == [("B镇卫生院", 1), ("A镇卫生院", 1), ("C镇卫生院", 1)]
    assert all(r.adjusted == pytest.approx(0.8) for r in ranking.ranked)
    assert math.isinf(ranking.prior.alpha)


def test_everyone_satisfied(county, make_team):
    for name, n in {"A镇卫生院": 10, "B镇卫生院": 3}.items():
        add_results(county, make_team(county, name, name + "团队"), "2026-06", sat(n, n))
    ranking = build_ranking(db.session, "institution", "2026-06", min_n=1)
    assert ranking.overall == 1.0
    assert [(r.unit.name, r.rank, r.adjusted) for r in ranking.ranked] == [("A镇卫生院", 1, 1.0), ("B镇卫生院", 1, 1.0)]
    assert all(r.position == "within" for r in ranking.ranked)


def test_no_interviews_at_all(county, make_team):
    add_results(county, make_team(county), "2026-06", [], outcomes=["no_answer", "refusal"])
    ranking = build_ranking(db.session, "institution", "2026-06")
    assert ranking.prior is None and ranking.overall is None and ranking.ranked == []
    assert [(r.n, r.adjusted) for r in ranking.insufficient] == [(0, None)]
    assert ranking.funnel == []


# ---------------------------------------------------------------------------
# rolling windows and the previous period
# ---------------------------------------------------------------------------


@pytest.fixture
def three_teams(county, make_team):
    t1 = make_team(county, "X镇卫生院", "T1团队")
    t2 = make_team(county, "X镇卫生院", "T2团队")
    t3 = make_team(county, "Y镇卫生院", "T3团队")
    plan = {
        t1: {"2025-12": (10, 10), "2026-01": (1, 2), "2026-03": (5, 6), "2026-04": (3, 4), "2026-05": (2, 2),
             "2026-06": (4, 5), "2026-07": (0, 3)},
        t2: {"2026-02": (4, 4), "2026-04": (2, 4), "2026-06": (3, 4)},
        t3: {"2026-03": (1, 3), "2026-05": (6, 6)},
    }
    for team, months in plan.items():
        for month, (y, n) in months.items():
            add_results(county, team, month, sat(y, n))
    return t1, t2, t3


def test_window_sums_its_months(three_teams):
    t1, t2, t3 = three_teams
    units = {u.key: u for u in unit_indicators(db.session, "team", months_of("2026-06", 3))}
    # April–June: T1 3/4 + 2/2 + 4/5 = 9/11; T2 2/4 + 3/4 = 5/8; T3 6/6
    assert (units[t1.id].counts.sat_top2, units[t1.id].n) == (9, 11)
    assert (units[t2.id].counts.sat_top2, units[t2.id].n) == (5, 8)
    assert (units[t3.id].counts.sat_top2, units[t3.id].n) == (6, 6)
    # score for T1: 9·100 + 2·25 = 950 over 11
    assert units[t1.id].score == pytest.approx(950 / 11)


def test_previous_period_window_1(three_teams):
    ranking = build_ranking(db.session, "team", "2026-06", min_n=1)
    assert ranking.months == ["2026-06"] and ranking.previous_months == ["2026-05"]
    # June: T1 4/5, T2 3/4 (T3 has nobody in June: absent). μ = 7/9; S = 5·(1/45)² + 4·(1/36)² = 1/180,
    # S/(μ(1−μ)) = (1/180)·(81/14) = 0.032 < k − 1 = 1: ρ̂ < 0, both estimates 7/9, a tie
    assert [(r.unit.name, r.rank) for r in ranking.ranked] == [("T1团队", 1), ("T2团队", 1)]
    assert ranking.insufficient == []
    rows = by_name(ranking.ranked)
    assert rows["T1团队"].adjusted == pytest.approx(7 / 9)
    # May: T1 2/2, T3 6/6 -> μ = 1, previous estimate 1; change 7/9 − 1 = −2/9
    assert rows["T1团队"].previous == pytest.approx(1.0)
    assert rows["T1团队"].previous_n == 2
    assert rows["T1团队"].change == pytest.approx(-2 / 9)
    # T2 had nobody in May
    assert (rows["T2团队"].previous, rows["T2团队"].previous_n, rows["T2团队"].change) == (None, 0, None)


def test_previous_period_window_3(three_teams):
    ranking = build_ranking(db.session, "team", "2026-06", window=3, min_n=1)
    assert ranking.months == ["2026-04", "2026-05", "2026-06"]
    assert ranking.previous_months == ["2026-01", "2026-02", "2026-03"]  # the window ending in March

    # now: T1 9/11, T2 5/8, T3 6/6. N = 25, μ = 20/25 = 4/5
    # S = 11·(9/11 − 4/5)² + 8·(5/8 − 4/5)² + 6·(1 − 4/5)² = 11/3025 + 49/200 + 6/25 = 43/88
    # N − Σn²/N − (k−1) = 25 − (121 + 64 + 36)/25 − 2 = 354/25
    # ρ̂ = (43/88 / (4/25) − 2) / (354/25) = (1075/352 − 2)/(354/25) = 9275/124608 = 0.074433
    mu, rho, now = eb([(9, 11), (5, 8), (6, 6)])
    assert mu == Fraction(4, 5) and rho == Fraction(9275, 124608)
    # α + β = 124608/9275 − 1 = 115333/9275 = 12.434825, α = 9.947860
    assert float(now(9, 11)) == pytest.approx(0.808534, abs=1e-6)  # (9 + 9.947860)/(11 + 12.434825)
    assert float(now(5, 8)) == pytest.approx(0.731490, abs=1e-6)
    assert float(now(6, 6)) == pytest.approx(0.865094, abs=1e-6)

    # before (January–March; December is outside both windows): T1 1/2 + 5/6 = 6/8, T2 4/4, T3 1/3
    # N = 15, μ = 11/15; S = 8·(3/4 − 11/15)² + 4·(4/15)² + 3·(1/3 − 11/15)² = 1/450 + 64/225 + 12/25 = 23/30
    # N − Σn²/N − (k−1) = 15 − (64 + 16 + 9)/15 − 2 = 106/15;
    # ρ̂ = ((23/30)/(44/225) − 2)/(106/15) = 2535/9328 = 0.271762
    mu_b, rho_b, before = eb([(6, 8), (4, 4), (1, 3)])
    assert mu_b == Fraction(11, 15) and rho_b == Fraction(2535, 9328)
    assert float(before(6, 8)) == pytest.approx(0.745818, abs=1e-6)
    assert float(before(4, 4)) == pytest.approx(0.893022, abs=1e-6)
    assert float(before(1, 3)) == pytest.approx(0.522054, abs=1e-6)

    rows = by_name(ranking.ranked)
    assert [(r.unit.name, r.rank) for r in ranking.ranked] == [("T3团队", 1), ("T1团队", 2), ("T2团队", 3)]
    expected = {
        "T1团队": ((9, 11), (6, 8), 0.808534 - 0.745818),  # +0.062716
        "T2团队": ((5, 8), (4, 4), 0.731490 - 0.893022),  # −0.161532
        "T3团队": ((6, 6), (1, 3), 0.865094 - 0.522054),  # +0.343040
    }
    for name, ((y, n), (py, pn), change) in expected.items():
        row = rows[name]
        assert (row.successes, row.n) == (y, n)
        assert row.adjusted == pytest.approx(float(now(y, n)), abs=1e-9)
        assert row.previous == pytest.approx(float(before(py, pn)), abs=1e-9)
        assert row.previous_n == pn
        assert row.change == pytest.approx(change, abs=2e-6)
        assert row.change == pytest.approx(row.adjusted - row.previous, abs=1e-12)


# ---------------------------------------------------------------------------
# county and city levels, the county filter
# ---------------------------------------------------------------------------


@pytest.fixture
def two_counties(make_county, make_team):
    p = make_county("岳阳县", "430621")
    q = make_county("平江县", "430626")
    make_county("华容县", "430623")  # no round at all
    add_results(p, make_team(p, "P1镇卫生院", "P1团队"), "2026-06", sat(10, 10))
    add_results(p, make_team(p, "P2镇卫生院", "P2团队"), "2026-06", sat(9, 10))
    # same institution name in another county: a different unit
    add_results(q, make_team(q, "P1镇卫生院", "Q1团队"), "2026-06", sat(10, 20))
    return p, q


def test_county_level(two_counties):
    p, q = two_counties
    ranking = build_ranking(db.session, "county", "2026-06", min_n=1)
    # 岳阳县 19/20, 平江县 10/20 (华容县 drew nobody: absent). μ = 29/40 = 0.725
    # S = 20·(0.95 − 0.725)² + 20·(0.5 − 0.725)² = 2.025; μ(1−μ) = 0.199375; S/μ(1−μ) = 10.156740
    # N − Σn²/N − (k−1) = 40 − 800/40 − 1 = 19; ρ̂ = (10.156740 − 1)/19 = 0.481934; α + β = 1.074974
    mu, rho, estimate = eb([(19, 20), (10, 20)])
    assert mu == Fraction(29, 40)
    assert float(rho) == pytest.approx(0.481934, abs=1e-6)
    rows = by_name(ranking.ranked)
    assert set(rows) == {"岳阳县", "平江县"}
    # 岳阳县: (19 + 0.779356)/(20 + 1.074974) = 0.938523; 平江县: (10 + 0.779356)/21.074974 = 0.511477
    assert rows["岳阳县"].adjusted == pytest.approx(float(estimate(19, 20)), abs=1e-9)
    assert rows["岳阳县"].adjusted == pytest.approx(0.938523, abs=1e-6)
    assert rows["平江县"].adjusted == pytest.approx(float(estimate(10, 20)), abs=1e-9)
    assert [(r.unit.name, r.rank) for r in ranking.ranked] == [("岳阳县", 1), ("平江县", 2)]
    # default: a county needs 30 interviews
    ranking = build_ranking(db.session, "county", "2026-06")
    assert ranking.min_n == 30 and ranking.ranked == []
    assert [r.unit.name for r in ranking.insufficient] == ["岳阳县", "平江县"]
    # filtered to one county
    ranking = build_ranking(db.session, "county", "2026-06", county_id=q.id, min_n=1)
    assert [(r.unit.name, r.n, r.adjusted) for r in ranking.ranked] == [("平江县", 20, 0.5)]


def test_county_filter_excludes_other_counties(two_counties):
    p, q = two_counties
    ranking = build_ranking(db.session, "institution", "2026-06", county_id=p.id)
    assert {r.unit.county_id for r in ranking.ranked + ranking.insufficient} == {p.id}
    # the prior comes from 岳阳县's two institutions only: 10/10 and 9/10, μ = 19/20
    # S = 10·0.05² + 10·0.05² = 0.05; μ(1−μ) = 0.0475; S/μ(1−μ) = 20/19;
    # N − Σn²/N − (k−1) = 20 − 10 − 1 = 9; ρ̂ = (20/19 − 1)/9 = 1/171, α + β = 170, α = 161.5, β = 8.5
    assert ranking.overall == pytest.approx(0.95)
    assert ranking.prior.rho == pytest.approx(1 / 171)
    assert ranking.prior.alpha == pytest.approx(161.5)
    assert ranking.prior.beta == pytest.approx(8.5)
    rows = [(r.unit.name, r.rank, r.n) for r in ranking.ranked]
    assert rows == [("P1镇卫生院", 1, 10), ("P2镇卫生院", 2, 10)]
    # (10 + 161.5)/180 = 0.952778, (9 + 161.5)/180 = 0.947222
    assert ranking.ranked[0].adjusted == pytest.approx(171.5 / 180)
    assert ranking.ranked[1].adjusted == pytest.approx(170.5 / 180)

    everywhere = build_ranking(db.session, "institution", "2026-06")
    assert len(everywhere.ranked) == 3
    assert {r.unit.county_id for r in everywhere.ranked} == {p.id, q.id}
    assert everywhere.overall == pytest.approx(29 / 40)

    teams = build_ranking(db.session, "team", "2026-06", county_id=q.id, min_n=1)
    assert [r.unit.name for r in teams.ranked] == ["Q1团队"]


def test_city_level(two_counties):
    p, q = two_counties
    ranking = build_ranking(db.session, "city", "2026-06")
    # one unit, all 40 interviews: 29/40; one unit is its own prior, estimate = observed
    assert ranking.min_n == 10
    (row,) = ranking.ranked
    assert (row.unit.name, row.successes, row.n, row.rank) == ("全市", 29, 40, 1)
    assert row.adjusted == pytest.approx(29 / 40)
    assert row.position == "within"
    (only_q,) = build_ranking(db.session, "city", "2026-06", county_id=q.id).ranked
    assert (only_q.successes, only_q.n) == (10, 20)
